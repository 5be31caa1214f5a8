package health

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// These tests run the real Checker (schedules, goroutines, passive path)
// against fake nodes inside a synctest bubble, whose clock is fake: no test
// sleeps in real time and every timing assertion is exact.

func TestNodeGoesDownAfterExactlyAttemptsFailedChecks(t *testing.T) {
	for _, attempts := range []int{1, 2, 3, 5} {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.c.Set(1, spec1s(attempts), nodesOf(10, 1))
			h.run()
			h.rec.waitStatus(t, 10, model.StatusUp, time.Second)
			h.fake.setFailing(10, true)
			h.rec.waitStatus(t, 10, model.StatusDown, time.Duration(attempts+2)*time.Second)

			// The events just before DOWN: one pass, then exactly attempts failures.
			ev := h.rec.snapshot()
			i := len(ev) - 1
			for ev[i].check || ev[i].to != model.StatusDown {
				i--
			}
			failed := 0
			for j := i - 1; j >= 0 && ev[j].check && ev[j].err != nil; j-- {
				failed++
			}
			if failed != attempts {
				t.Fatalf("attempts=%d: DOWN after %d failed checks", attempts, failed)
			}
			h.stop(t)
		})
	}
}

func TestDownNodeComesBackAfterOnePassingCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		h.c.Set(1, spec1s(3), nodesOf(10, 1))
		h.fake.setFailing(10, true)
		h.run()
		h.rec.waitStatus(t, 10, model.StatusDown, 5*time.Second)
		h.fake.setFailing(10, false)
		h.rec.waitStatus(t, 10, model.StatusUp, 2*time.Second)

		// Between the DOWN and the UP there is exactly one check, and it passed.
		var between []obsEvent
		for _, e := range h.rec.snapshot() {
			switch {
			case !e.check && e.to == model.StatusDown:
				between = between[:0]
			case !e.check && e.to == model.StatusUp:
				if len(between) != 1 || between[0].err != nil {
					t.Fatalf("UP after checks %+v since DOWN, want one passing check", between)
				}
			case e.check:
				between = append(between, e)
			}
		}
		h.stop(t)
	})
}

func TestUnknownUntilFirstVerdictAndFirstCheckSoon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		nodes := h.c.Set(1, spec1s(3), nodesOf(10, 2))
		h.fake.setFailing(11, true)
		if got := h.c.Status(10); got != model.StatusUnknown {
			t.Fatalf("before any check: status %s, want unknown", got)
		}
		start := time.Now()
		h.run()
		up := h.rec.waitStatus(t, 10, model.StatusUp, time.Second)
		first := h.fake.checks(10)[0]
		if d := first.Sub(start); d >= initialDelayMax(time.Second) {
			t.Fatalf("first check %v after Run, want < %v", d, initialDelayMax(time.Second))
		}
		if up.Sub(first) > 500*time.Millisecond {
			t.Fatalf("UP %v after the first check started", up.Sub(first))
		}
		// Node 11 fails: unknown until its third failure, then DOWN.
		for len(h.fake.checks(11)) < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		if got := nodes[1].Status(); got != model.StatusUnknown {
			t.Fatalf("after 2 failed checks: status %s, want unknown", got)
		}
		h.rec.waitStatus(t, 11, model.StatusDown, 2*time.Second)
		if got := len(h.fake.checks(11)); got != 3 {
			t.Fatalf("DOWN after %d checks, want 3", got)
		}
		h.stop(t)
	})
}

func TestDownDetectedWithinIntervalTimesAttemptsPlusTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, attempts = 50, 3
		spec := spec1s(attempts)
		bound := attempts*spec.Interval + spec.Timeout + jitterMax(spec.Interval, spec.Timeout)
		h := newHarness(t, Options{})
		h.c.Set(1, spec, nodesOf(100, n))
		h.run()
		for i := range n {
			h.fake.setLatency(100+i, time.Duration(i)*7*time.Millisecond) // 0–343 ms
		}
		time.Sleep(3*time.Second + 123*time.Millisecond)
		broke := time.Now()
		for i := range n {
			h.fake.setFailing(100+i, true)
		}
		time.Sleep(bound + time.Millisecond)
		seen := map[int]time.Time{}
		for _, e := range h.rec.snapshot() {
			if !e.check && e.to == model.StatusDown {
				seen[e.nodeID] = e.at
			}
		}
		if len(seen) != n {
			t.Fatalf("only %d of %d nodes DOWN within %v", len(seen), n, bound)
		}
		for id, at := range seen {
			if d := at.Sub(broke); d > bound {
				t.Fatalf("node %d DOWN %v after breaking, bound %v", id, d, bound)
			}
		}
		h.stop(t)
	})
}

func TestChecksAreSpreadOverTheInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 200
		h := newHarness(t, Options{})
		origin := time.Now()
		h.c.Set(1, spec1s(3), nodesOf(1000, n))
		h.run()
		time.Sleep(5 * time.Second)
		h.stop(t)

		perMs := map[time.Duration]int{}
		var buckets [10]int // later checks by position in the interval
		for i := range n {
			starts := h.fake.checks(1000 + i)
			if len(starts) < 4 {
				t.Fatalf("node %d: %d checks in 5 s", 1000+i, len(starts))
			}
			for k, s := range starts {
				off := s.Sub(origin)
				perMs[off.Truncate(time.Millisecond)]++
				if k >= 2 {
					buckets[off%time.Second/(100*time.Millisecond)]++
				}
			}
		}
		for ms, c := range perMs {
			if c > 5 {
				t.Fatalf("%d checks started in the millisecond at %v: lockstep", c, ms)
			}
		}
		for i, c := range buckets {
			if c == 0 {
				t.Fatalf("no check in the %d00–%d99 ms part of the interval: %v", i, i, buckets)
			}
		}
	})
}

func TestChecksOfOneNodeNeverOverlap(t *testing.T) {
	tests := []struct {
		name              string
		interval, timeout time.Duration
		latency, minGap   time.Duration
	}{
		{"slow check within timeout", time.Second, 500 * time.Millisecond, 450 * time.Millisecond, time.Second - jitterMax(time.Second, 500*time.Millisecond)},
		{"check slower than the interval", time.Second, 3 * time.Second, 1500 * time.Millisecond, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{})
				h.fake.setLatency(10, tt.latency)
				h.c.Set(1, Spec{Check: model.CheckConnection, Interval: tt.interval, Timeout: tt.timeout, Attempts: 3}, nodesOf(10, 1))
				h.run()
				time.Sleep(10 * time.Second)
				h.stop(t)
				if got := h.fake.maxConcurrent(10); got != 1 {
					t.Fatalf("%d checks of one node ran at once", got)
				}
				starts := h.fake.checks(10)
				for i := 1; i < len(starts); i++ {
					gap := starts[i].Sub(starts[i-1])
					if gap < tt.latency {
						t.Fatalf("check %d started %v after check %d, which took %v", i, gap, i-1, tt.latency)
					}
					// Once the node sits on its grid (the first checks align it
					// to its place in the interval), checks are an interval apart.
					if i >= 3 && gap < tt.minGap {
						t.Fatalf("checks %d and %d started %v apart, want ≥ %v", i-1, i, gap, tt.minGap)
					}
				}
				if want := int(10*time.Second/max(tt.interval, tt.latency)) - 1; len(starts) < want {
					t.Fatalf("%d checks in 10 s, want ≥ %d", len(starts), want)
				}
			})
		})
	}
}

func TestPassiveFailuresTripWithinWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		spec := Spec{Check: model.CheckNone, Passive: true}
		n := h.c.Set(1, spec, nodesOf(10, 1))[0]
		h.run()
		if got := n.Status(); got != model.StatusUnknown {
			t.Fatalf("check none: status %s, want Unknown", got)
		}
		fail := func(k int) {
			for range k {
				n.Failure(nowNanos())
			}
			synctest.Wait()
		}
		fail(2)
		n.Success()
		fail(2)
		if got := n.Status(); got != model.StatusUnknown {
			t.Fatalf("2 failures, a success, 2 failures: status %s, want Unknown", got)
		}
		n.Success()
		// Three failures spread wider than the window do not trip.
		fail(1)
		time.Sleep(6 * time.Second)
		fail(1)
		time.Sleep(5 * time.Second)
		fail(1)
		if got := n.Status(); got != model.StatusUnknown {
			t.Fatalf("3 failures over 11 s: status %s, want Unknown", got)
		}
		// Two more within the window of the last one trip.
		time.Sleep(time.Second)
		fail(2)
		if got := n.Status(); got != model.StatusDown {
			t.Fatalf("3 failures within 10 s: status %s, want DOWN", got)
		}
		tripped := time.Now()
		if st := n.Stats(); st.PassiveTrips != 1 || st.PassiveFailures != 9 {
			t.Fatalf("stats %+v, want 1 trip and 9 failures", st)
		}
		// Cool-down: DOWN until 30 s after the trip, then Unknown again (eligible).
		time.Sleep(DefaultPassiveCooldown - time.Millisecond)
		if got := n.Status(); got != model.StatusDown {
			t.Fatalf("just before the cool-down ends: status %s, want DOWN", got)
		}
		back := h.rec.waitStatus(t, 10, model.StatusUnknown, time.Second)
		if d := back.Sub(tripped); d != DefaultPassiveCooldown {
			t.Fatalf("Unknown %v after the trip, want %v", d, DefaultPassiveCooldown)
		}
		h.stop(t)
	})
}

func TestPassiveChecksOffIgnoreFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{PassiveThreshold: 1})
		n := h.c.Set(1, Spec{Check: model.CheckNone}, nodesOf(10, 1))[0]
		h.run()
		for range 10 {
			n.Failure(nowNanos())
		}
		synctest.Wait()
		if got := n.Status(); got != model.StatusUnknown {
			t.Fatalf("check_passive off: status %s, want Unknown", got)
		}
		// Turning them on makes a single failure (threshold 1) trip.
		n2 := h.c.Set(1, Spec{Check: model.CheckNone, Passive: true}, nodesOf(10, 1))[0]
		if n2 != n {
			t.Fatal("settings change replaced the node handle")
		}
		synctest.Wait()
		n.Failure(nowNanos())
		synctest.Wait()
		if got := n.Status(); got != model.StatusDown {
			t.Fatalf("threshold 1: status %s, want DOWN", got)
		}
		// Turning them off again releases the node.
		h.c.Set(1, Spec{Check: model.CheckNone}, nodesOf(10, 1))
		if got := n.Status(); got != model.StatusUnknown {
			t.Fatalf("passive checks turned off: status %s, want Unknown", got)
		}
		h.stop(t)
	})
}

func TestPassiveTripRecoversOnlyOnACheckStartedAfterIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		n := h.c.Set(1, spec1s(3), nodesOf(10, 1))[0]
		h.fake.setLatency(10, 400*time.Millisecond)
		h.run()
		h.rec.waitStatus(t, 10, model.StatusUp, time.Second)
		waitInFlight(t, h.fake, 10)
		checksBefore := len(h.fake.checks(10))
		for range DefaultPassiveThreshold {
			n.Failure(nowNanos())
		}
		synctest.Wait()
		if got := n.Status(); got != model.StatusDown {
			t.Fatalf("after a passive trip: status %s, want DOWN", got)
		}
		for h.fake.inFlightNow(10) {
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		if got := n.Status(); got != model.StatusDown {
			t.Fatalf("the check in flight during the trip passed and set status %s", got)
		}
		h.rec.waitStatus(t, 10, model.StatusUp, 2*time.Second)
		if got := len(h.fake.checks(10)); got != checksBefore+1 {
			t.Fatalf("UP after %d more checks, want 1", got-checksBefore)
		}
		h.stop(t)
	})
}

func TestRejectStopsChecksAndReportsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{PassiveThreshold: 1})
		nodes := nodesOf(10, 2)
		handles := h.c.Set(1, spec1s(3), nodes)
		h.run()
		h.rec.waitStatus(t, 10, model.StatusUp, time.Second)

		nodes[0].Mode = model.ModeReject
		h.c.Set(1, spec1s(3), nodes)
		if got := h.c.Status(10); got != model.StatusDown {
			t.Fatalf("reject: status %s, want DOWN", got)
		}
		synctest.Wait()
		before := len(h.fake.checks(10))
		handles[0].Failure(nowNanos())
		time.Sleep(5 * time.Second)
		if got := len(h.fake.checks(10)); got != before {
			t.Fatalf("%d checks of a reject node in 5 s", got-before)
		}
		if got := len(h.fake.checks(11)); got < 5 {
			t.Fatalf("the accept node beside it had %d checks in 5 s", got)
		}
		if st := handles[0].Stats(); st.PassiveFailures != 0 {
			t.Fatalf("a failure reported for a reject node counted: %+v", st)
		}
		if k := h.c.Counts(1); k != (Counts{Up: 1, Down: 1}) {
			t.Fatalf("counts %+v, want 1 up 1 down", k)
		}

		for _, mode := range []model.Mode{model.ModeDrain, model.ModeBackup, model.ModeAccept} {
			nodes[0].Mode = mode
			if got := h.c.Set(1, spec1s(3), nodes)[0]; got != handles[0] {
				t.Fatalf("mode %s replaced the handle", mode)
			}
			if got := h.c.Status(10); got != model.StatusUnknown && mode == model.ModeDrain {
				t.Fatalf("back from reject: status %s, want unknown", got)
			}
			h.rec.waitStatus(t, 10, model.StatusUp, initialDelayMax(time.Second)+time.Second)
			n := len(h.fake.checks(10))
			time.Sleep(3 * time.Second)
			if got := len(h.fake.checks(10)) - n; got < 2 {
				t.Fatalf("mode %s: %d checks in 3 s", mode, got)
			}
			if mode != model.ModeAccept {
				nodes[0].Mode = model.ModeReject
				h.c.Set(1, spec1s(3), nodes)
			}
		}
		h.stop(t)
	})
}

func TestSetReconcilesNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		spec := spec1s(2)
		nodes := nodesOf(10, 3)
		first := h.c.Set(1, spec, nodes)
		h.run()
		for _, id := range []int{10, 11, 12} {
			h.rec.waitStatus(t, id, model.StatusUp, time.Second)
		}

		// Unchanged: same handles and status, schedule not restarted.
		h.fake.setLatency(10, 100*time.Millisecond)
		time.Sleep(2 * time.Second)
		waitInFlight(t, h.fake, 10)
		before := h.fake.checks(10)
		again := h.c.Set(1, spec, nodes)
		for i := range again {
			if again[i] != first[i] || again[i].Status() != model.StatusUp {
				t.Fatalf("unchanged node %d: handle replaced or status %s", nodes[i].ID, again[i].Status())
			}
		}
		for len(h.fake.checks(10)) == len(before) {
			time.Sleep(time.Millisecond)
		}
		gap := h.fake.checks(10)[len(before)].Sub(before[len(before)-1])
		if j := jitterMax(spec.Interval, spec.Timeout); gap < spec.Interval-j {
			t.Fatalf("next check %v after the last: schedule restarted", gap)
		}

		// Changed address: new handle, unknown, then UP; the old handle is dead.
		nodes[1].Address = "127.0.9.200:8080"
		// Removed: node 12.
		changed := h.c.Set(1, spec, nodes[:2])
		if changed[1] == first[1] {
			t.Fatal("a changed address kept the old handle")
		}
		if changed[1].State() == first[1].State() {
			t.Fatal("a changed address kept the old balance state")
		}
		if got := h.c.Status(11); got != model.StatusUnknown {
			t.Fatalf("changed address: status %s, want unknown", got)
		}
		if got := h.c.Status(12); got != model.StatusUnknown {
			t.Fatalf("removed node: status %s, want unknown", got)
		}
		if h.c.Lookup(12) != nil || h.c.Lookup(11) != changed[1] {
			t.Fatal("Lookup does not follow the node set")
		}
		synctest.Wait()
		removedChecks := len(h.fake.checks(12))
		h.rec.waitStatus(t, 11, model.StatusUp, 2*time.Second)
		time.Sleep(3 * time.Second)
		if got := len(h.fake.checks(12)); got != removedChecks {
			t.Fatalf("removed node checked %d more times", got-removedChecks)
		}
		if k := h.c.Counts(1); k != (Counts{Up: 2}) {
			t.Fatalf("counts %+v, want 2 up", k)
		}

		// Remove the configuration: every check stops.
		h.c.Remove(1)
		synctest.Wait()
		n10 := len(h.fake.checks(10))
		time.Sleep(3 * time.Second)
		if got := len(h.fake.checks(10)); got != n10 {
			t.Fatalf("node of a removed configuration checked %d more times", got-n10)
		}
		if k := h.c.Counts(1); k != (Counts{}) || h.c.Status(10) != model.StatusUnknown {
			t.Fatalf("removed configuration: counts %+v status %s", k, h.c.Status(10))
		}
		h.stop(t)
	})
}

func TestCheckSettingsChangeKeepsVerdictsOrAppliesNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		n := h.c.Set(1, spec1s(1), nodesOf(10, 1))[0]
		h.fake.setFailing(10, true)
		h.run()
		h.rec.waitStatus(t, 10, model.StatusDown, 2*time.Second)

		// A new path keeps DOWN until a check says otherwise.
		s := spec1s(1)
		s.Path = "/other"
		h.c.Set(1, s, nodesOf(10, 1))
		if got := n.Status(); got != model.StatusDown {
			t.Fatalf("check_path changed: status %s, want DOWN kept", got)
		}
		// check none: the active verdict is dropped at once; no verdict is Unknown.
		h.c.Set(1, Spec{Check: model.CheckNone, Passive: true}, nodesOf(10, 1))
		if got := n.Status(); got != model.StatusUnknown {
			t.Fatalf("check none: status %s, want Unknown", got)
		}
		synctest.Wait()
		checks := len(h.fake.checks(10))
		time.Sleep(3 * time.Second)
		if got := len(h.fake.checks(10)); got != checks {
			t.Fatalf("check none ran %d active checks", got-checks)
		}
		if h.onChanges(1) == 0 {
			t.Fatal("OnChange never called for the configuration")
		}
		h.stop(t)
	})
}

func TestOnChangeNamesTheConfiguration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		h.c.Set(1, spec1s(1), nodesOf(10, 2))
		h.c.Set(2, spec1s(1), nodesOf(20, 2))
		h.run()
		for _, id := range []int{10, 11, 20, 21} {
			h.rec.waitStatus(t, id, model.StatusUp, time.Second)
		}
		synctest.Wait()
		c1, c2 := h.onChanges(1), h.onChanges(2)
		h.fake.setFailing(21, true)
		h.rec.waitStatus(t, 21, model.StatusDown, 2*time.Second)
		time.Sleep(2 * time.Second)
		if got := h.onChanges(2); got != c2+1 {
			t.Fatalf("config 2: %d OnChange calls for one change", got-c2)
		}
		if got := h.onChanges(1); got != c1 {
			t.Fatalf("config 1: %d OnChange calls without a change", got-c1)
		}
		h.stop(t)
	})
}

func TestStatusBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		nodes := nodesOf(10, 3)
		nodes[1].Mode = model.ModeReject
		h.c.Set(1, spec1s(3), nodes)
		h.c.Set(2, Spec{Check: model.CheckNone}, nodesOf(20, 2))
		want := map[int]model.NodeStatus{
			10: model.StatusUnknown, 11: model.StatusDown, 12: model.StatusUnknown,
			20: model.StatusUnknown, 21: model.StatusUnknown, 99: model.StatusUnknown,
		}
		for id, st := range want {
			if got := h.c.Status(id); got != st {
				t.Errorf("node %d: status %s, want %s", id, got, st)
			}
		}
		if k := h.c.Counts(1); k != (Counts{Down: 1, Unknown: 2}) {
			t.Errorf("config 1 counts %+v", k)
		}
		if k := h.c.Counts(2); k != (Counts{Unknown: 2}) {
			t.Errorf("config 2 counts %+v", k)
		}
		time.Sleep(5 * time.Second)
		if got := len(h.fake.checks(10)); got != 0 {
			t.Fatalf("%d checks before Run", got)
		}
		h.run()
		h.rec.waitStatus(t, 10, model.StatusUp, time.Second)
		if err := h.c.Run(t.Context()); err == nil {
			t.Fatal("a second Run did not fail")
		}
		h.stop(t)
	})
}

func TestStatsCountChecksFailuresAndChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		h.c.Set(1, spec1s(2), nodesOf(10, 1))
		h.run()
		h.rec.waitStatus(t, 10, model.StatusUp, time.Second)
		h.fake.setFailing(10, true)
		h.rec.waitStatus(t, 10, model.StatusDown, 3*time.Second)
		h.stop(t)

		st := h.c.AppendStats(nil)
		if len(st) != 1 {
			t.Fatalf("%d stats, want 1", len(st))
		}
		s := st[0]
		var checks, failures uint64
		for _, e := range h.rec.snapshot() {
			if e.check {
				checks++
				if e.err != nil {
					failures++
				}
			}
		}
		// Fake passing checks take no time; failing ones the 500 ms timeout.
		sum := time.Duration(failures) * 500 * time.Millisecond
		if s.Checks != checks || s.CheckFailures != failures || failures < 2 {
			t.Fatalf("stats %+v, observer saw %d checks %d failures", s, checks, failures)
		}
		if s.StatusChanges != 2 || s.Status != model.StatusDown || s.LastError == "" {
			t.Fatalf("stats %+v, want 2 changes, DOWN and an error", s)
		}
		if s.CheckLatencySum != sum || s.LastCheckLatency != 500*time.Millisecond {
			t.Fatalf("latency sum %v last %v, want %v and 500ms", s.CheckLatencySum, s.LastCheckLatency, sum)
		}
	})
}
