package health

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

func TestTimerHeapPopsInTimeOrder(t *testing.T) {
	var h timerHeap
	base := time.Unix(1000, 0)
	for _, s := range []int{5, 1, 9, 3, 3, 7, 0, 8} {
		h.push(due{at: base.Add(time.Duration(s) * time.Second)})
	}
	prev := time.Time{}
	for n := 0; len(h) > 0; n++ {
		d := h.pop()
		if d.at.Before(prev) {
			t.Fatalf("pop %d: %v after %v", n, d.at, prev)
		}
		prev = d.at
	}
}

// goroutines waits for the goroutine count to settle and returns it.
func goroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(2 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

func TestNoGoroutinePerNodeWithPassiveChecksOnly(t *testing.T) {
	before := goroutines()
	c := New(Options{Logger: quiet, PassiveCooldown: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	spec := Spec{Check: model.CheckNone, Passive: true}
	var handles []*Node
	for cfg := 1; cfg <= 10; cfg++ {
		handles = append(handles, c.Set(cfg, spec, nodesOf(cfg*1000, 500))...)
	}
	if g := goroutines() - before; g > 5 {
		t.Fatalf("%d goroutines for 5,000 nodes with check none: want a handful, not one per node", g)
	}
	// Passive checks still work: three failures take a node DOWN.
	n := handles[1234]
	for range 3 {
		n.Failure(nowNanos())
	}
	deadline := time.Now().Add(2 * time.Second)
	for n.Status() != model.StatusDown {
		if time.Now().After(deadline) {
			t.Fatal("passive trip not applied")
		}
		time.Sleep(time.Millisecond)
	}
	if g := goroutines() - before; g > 5 {
		t.Fatalf("%d goroutines after a trip (its cool-down must be a timer, not a goroutine)", g)
	}
	cancel()
	<-done
}

func TestPassiveCooldownWithoutGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{PassiveCooldown: 30 * time.Second})
		nodes := h.c.Set(1, Spec{Check: model.CheckNone, Passive: true}, nodesOf(10, 1))
		h.run()
		synctest.Wait()
		tripAt := time.Now()
		for range 3 {
			nodes[0].Failure(nowNanos())
		}
		h.rec.waitStatus(t, 10, model.StatusDown, time.Second)
		backAt := h.rec.waitStatus(t, 10, model.StatusUnknown, time.Minute)
		if got := backAt.Sub(tripAt); got != 30*time.Second {
			t.Fatalf("back %v after the trip, want the 30 s cool-down", got)
		}
		h.stop(t)
	})
}

func TestActiveChecksRunOnABoundedSetOfWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{MaxConcurrentChecks: 3})
		var mu sync.Mutex
		inFlight, most := 0, 0
		fake := h.fake.probe
		h.c.probeFn = func(ctx context.Context, n *Node, cs *checkSpec) error {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			defer func() {
				mu.Lock()
				inFlight--
				mu.Unlock()
			}()
			return fake(ctx, n, cs)
		}
		nodes := nodesOf(100, 40)
		for _, n := range nodes {
			h.fake.setLatency(n.ID, 200*time.Millisecond)
		}
		h.c.Set(1, spec1s(3), nodes)
		h.run()
		time.Sleep(10 * time.Second)
		h.stop(t)
		if most != 3 {
			t.Fatalf("at most %d checks at once, want the bound 3 reached and kept", most)
		}
		for _, n := range nodes {
			if len(h.fake.checks(n.ID)) < 2 || h.fake.maxConcurrent(n.ID) != 1 {
				t.Fatalf("node %d: %d checks, %d at once", n.ID, len(h.fake.checks(n.ID)), h.fake.maxConcurrent(n.ID))
			}
		}
	})
}

func TestIdleActiveCheckerHoldsNoGoroutinePerNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		before := runtime.NumGoroutine()
		h := newHarness(t, Options{})
		h.c.Set(1, Spec{Check: model.CheckConnection, Interval: time.Hour, Timeout: time.Second, Attempts: 1}, nodesOf(1, 2000))
		h.run()
		time.Sleep(time.Second) // every first check has run (initial delay < 500 ms)
		synctest.Wait()
		if g := runtime.NumGoroutine() - before; g > 5 {
			t.Fatalf("%d goroutines between checks of 2,000 nodes", g)
		}
		h.stop(t)
	})
}
