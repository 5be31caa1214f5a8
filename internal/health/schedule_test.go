package health

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestNextCheckStaysOnTheGrid(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		interval := time.Duration(1+r.IntN(60_000)) * time.Millisecond
		base := t0.Add(time.Duration(r.Int64N(int64(time.Hour))) - 30*time.Minute)
		start := t0.Add(time.Duration(r.Int64N(int64(time.Hour))) - 30*time.Minute)
		end := start.Add(time.Duration(r.Int64N(int64(2 * interval))))
		jitter := time.Duration(r.Int64N(int64(interval/20) + 1))

		next := nextCheck(base, interval, start, end, jitter)
		if next.Before(end) || !next.After(start) {
			t.Fatalf("next %v not after start %v and end %v", next, start, end)
		}
		if next.Equal(end) {
			continue // the grid point passed during the check: run at once
		}
		slot := next.Add(-jitter)
		if off := slot.Sub(base) % interval; off != 0 {
			t.Fatalf("slot %v is %v off the grid", slot, off)
		}
		if gap := slot.Sub(start); gap <= 0 || gap > interval {
			t.Fatalf("slot %v is %v after start, want (0, %v]", slot, gap, interval)
		}
	}
}

func TestJitterLeavesRoomForTheTimeout(t *testing.T) {
	for _, tc := range []struct{ interval, timeout time.Duration }{
		{31 * time.Second, 30 * time.Second},
		{2 * time.Second, time.Second},
		{time.Hour, 30 * time.Second},
		{time.Second, 500 * time.Millisecond},
		{time.Second, 2 * time.Second}, // timeout ≥ interval: no jitter
	} {
		j := jitterMax(tc.interval, tc.timeout)
		if j < 0 || j > maxJitter || j > tc.interval/20 {
			t.Fatalf("jitterMax(%v, %v) = %v out of bounds", tc.interval, tc.timeout, j)
		}
		if tc.timeout < tc.interval && tc.timeout+j > tc.interval {
			t.Fatalf("jitterMax(%v, %v) = %v pushes a timed-out check past the next grid point", tc.interval, tc.timeout, j)
		}
	}
}

// TestDetectionBoundBySimulation runs the schedule of one node whose failing
// checks each take the full timeout, with random phases, start delays,
// jitters and failure times, and checks it goes DOWN within
// attempts×interval + timeout + J of the failure.
func TestDetectionBoundBySimulation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		interval := time.Duration(2+r.IntN(3599)) * time.Second
		timeout := time.Duration(1+r.Int64N(int64(min(interval-time.Second, 30*time.Second)))) + time.Second - 1
		if timeout >= interval {
			timeout = interval - time.Millisecond
		}
		attempts := 1 + r.IntN(30)
		okLatency := time.Duration(r.Int64N(int64(timeout)))
		jmax := jitterMax(interval, timeout)
		rnd := func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return time.Duration(r.Int64N(int64(d)))
		}

		origin := t0
		base := origin.Add(rnd(interval))
		start := origin.Add(rnd(initialDelayMax(interval)))
		fail := origin.Add(rnd(time.Duration(attempts+3) * interval))
		failures := 0
		for checks := 0; ; checks++ {
			if checks > 2*attempts+10 {
				t.Fatalf("no DOWN after %d checks", checks)
			}
			var end time.Time
			if start.Before(fail) {
				end = start.Add(okLatency)
			} else {
				end = start.Add(timeout)
				failures++
				if failures == attempts {
					bound := time.Duration(attempts)*interval + timeout + jmax
					if got := end.Sub(fail); got > bound {
						t.Fatalf("interval=%v timeout=%v attempts=%d: DOWN %v after failure, bound %v", interval, timeout, attempts, got, bound)
					}
					break
				}
			}
			start = nextCheck(base, interval, start, end, rnd(jmax))
		}
	}
}
