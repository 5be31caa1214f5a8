package procs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

const tick = 250 * time.Millisecond

// cpus is a duration of CPU time over one tick: cpus(1) is a whole CPU.
func cpus(x float64) time.Duration { return time.Duration(x * float64(tick)) }

// contended is a tick in which the threads ran a CPU and waited as long.
var contended = Sample{Interval: tick, Run: cpus(1), Wait: cpus(1)}

// saturated is a tick in which one P ran flat out, not waiting, with most of a
// CPU idle on the host.
var saturated = Sample{Interval: tick, Run: cpus(0.98), Wait: cpus(0.02), HostIdle: cpus(0.9)}

// steps feeds c n copies of s and returns the counts it answered.
func steps(c *Controller, s Sample, n int) []int {
	var got []int
	for range n {
		got = append(got, c.Step(s))
	}
	return got
}

func TestDropsAPWhenTheThreadsWaitAsLongAsTheyRun(t *testing.T) {
	c := NewController(DefaultPolicy(2), 2)
	if got := steps(c, contended, 2); got[0] != 2 || got[1] != 1 {
		t.Fatalf("counts %v; want 2 after one contended sample and 1 after the second", got)
	}
	if got := steps(c, contended, 10); got[9] != 1 {
		t.Fatalf("counts %v; want it to stay at the policy's Min, 1", got)
	}
}

func TestKeepsItsPsWhenWaitsAreShortOrTheProcessNearlyIdle(t *testing.T) {
	for name, s := range map[string]Sample{
		"short waits":  {Interval: tick, Run: cpus(1.9), Wait: cpus(0.3)},
		"nearly idle":  {Interval: tick, Run: cpus(0.2), Wait: cpus(0.4)},
		"no time seen": {Interval: tick},
	} {
		c := NewController(DefaultPolicy(2), 2)
		if got := steps(c, s, 40); got[39] != 2 {
			t.Errorf("%s: counts %v; want 2 throughout", name, got)
		}
	}
	// One contended sample between good ones is not a trend.
	c := NewController(DefaultPolicy(2), 2)
	for range 20 {
		c.Step(contended)
		if n := c.Step(Sample{Interval: tick, Run: cpus(1.5), Wait: cpus(0.1)}); n != 2 {
			t.Fatalf("dropped to %d on single contended samples", n)
		}
	}
}

func TestAddsAPBackWhenSaturatedWithACPUIdleAfterTheHold(t *testing.T) {
	pol := DefaultPolicy(2)
	c := NewController(pol, 2)
	steps(c, contended, pol.DropAfter)
	holdTicks := int(pol.Hold / tick)
	got := steps(c, saturated, holdTicks-1)
	for i, n := range got {
		if n != 1 {
			t.Fatalf("tick %d of the hold: %d Ps; want 1 until the hold has passed", i, n)
		}
	}
	if n := c.Step(saturated); n != 2 {
		t.Fatalf("after the hold: %d Ps; want 2", n)
	}
	if c.Reason() == "" {
		t.Error("no reason given for the change")
	}
}

func TestDoesNotAddWithoutIdleCPUOrWhileNotSaturated(t *testing.T) {
	for name, s := range map[string]Sample{
		"host busy":    {Interval: tick, Run: cpus(0.98), Wait: cpus(0.02), HostIdle: cpus(0.2)},
		"P not busy":   {Interval: tick, Run: cpus(0.6), Wait: cpus(0.02), HostIdle: cpus(1.4)},
		"still waits":  {Interval: tick, Run: cpus(0.98), Wait: cpus(0.7), HostIdle: cpus(0.9)},
		"already full": saturated,
	} {
		start := 1
		if name == "already full" {
			start = 2
		}
		c := NewController(DefaultPolicy(2), start)
		if got := steps(c, s, 400); got[399] != start {
			t.Errorf("%s: ended at %d Ps; want %d", name, got[399], start)
		}
	}
}

// An add that has to be dropped again soon doubles the hold before the next try,
// so that a contended host sees the extra P rarely.
func TestTheHoldDoublesWhenAnAddIsDroppedSoon(t *testing.T) {
	pol := DefaultPolicy(2)
	c := NewController(pol, 2)
	steps(c, contended, pol.DropAfter)
	ticksToAdd := func() int {
		for i := 1; i < 100000; i++ {
			if c.Step(saturated) == 2 {
				return i
			}
		}
		t.Fatal("never added a P")
		return 0
	}
	first := ticksToAdd()
	steps(c, contended, pol.DropAfter)
	second := ticksToAdd()
	steps(c, contended, pol.DropAfter)
	third := ticksToAdd()
	if second < 2*first-pol.AddAfter || third < 2*second-pol.AddAfter {
		t.Errorf("ticks before each add: %d, %d, %d; want each about twice the one before", first, second, third)
	}
	// The hold stops growing at MaxHold.
	for range 10 {
		steps(c, contended, pol.DropAfter)
		ticksToAdd()
	}
	if c.hold != pol.MaxHold {
		t.Errorf("hold %v after many swings; want MaxHold %v", c.hold, pol.MaxHold)
	}
	// An add that held for long resets it.
	steps(c, Sample{Interval: tick, Run: cpus(1.9), Wait: cpus(0.1)}, int(5*pol.MaxHold/tick))
	steps(c, contended, pol.DropAfter)
	if c.hold != pol.Hold {
		t.Errorf("hold %v after a long stable spell; want %v again", c.hold, pol.Hold)
	}
}

func TestTheDefaultPolicyKeepsHalfTheProcs(t *testing.T) {
	for _, c := range []struct{ max, floor int }{{2, 1}, {3, 2}, {8, 4}, {64, 32}} {
		ctl := NewController(DefaultPolicy(c.max), c.max)
		if got := steps(ctl, contended, 1000); got[999] != c.floor {
			t.Errorf("max %d: dropped to %d Ps under contention; want %d", c.max, got[999], c.floor)
		}
	}
}

func TestNewControllerClampsToThePolicy(t *testing.T) {
	for _, c := range []struct{ max, start, want int }{{4, 9, 4}, {4, 0, 2}, {0, 3, 1}} {
		if got := NewController(DefaultPolicy(c.max), c.start).Procs(); got != c.want {
			t.Errorf("max %d, start %d: %d Ps; want %d", c.max, c.start, got, c.want)
		}
	}
}

// script is a sampler that replays samples, then reports ctx done through stop.
type script struct {
	samples []Sample
	stop    func()
}

func (s *script) sample() (Sample, error) {
	if len(s.samples) == 0 {
		s.stop()
		return Sample{}, nil
	}
	x := s.samples[0]
	s.samples = s.samples[1:]
	return x, nil
}

// runScript runs run over samples, starting at two Ps, and returns the counts it
// set and what it logged.
func runScript(t *testing.T, pol Policy, samples []Sample, limit func() (int, bool)) (calls []int, logged string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	procs := 2
	var log bytes.Buffer
	err := run(ctx, pol, &script{samples: samples, stop: cancel}, func(n int) int {
		if n > 0 {
			calls = append(calls, n)
			procs = n
		}
		return procs
	}, limit, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return calls, log.String()
}

// run sets GOMAXPROCS through its setter at each of the controller's changes, down
// under contention and back up once the host has a CPU idle, and logs each.
func TestRunAppliesEachChange(t *testing.T) {
	pol := DefaultPolicy(2)
	pol.Every = time.Millisecond
	pol.Hold = 4 * tick
	var samples []Sample
	for range pol.DropAfter {
		samples = append(samples, contended)
	}
	for range 12 {
		samples = append(samples, saturated)
	}
	calls, logged := runScript(t, pol, samples, unknownLimit)
	if fmt.Sprint(calls) != "[1 2]" {
		t.Fatalf("GOMAXPROCS set to %v; want [1 2]: one P under contention, two again with a CPU idle", calls)
	}
	if n := strings.Count(logged, "changed the number of Ps"); n != 2 {
		t.Errorf("%d changes logged; want 2:\n%s", n, logged)
	}
}

// unknownLimit is a system that does not say how many CPUs the process may use.
func unknownLimit() (int, bool) { return 0, false }

// Resize moves the range with the CPUs the process may use: all of them when they
// grew, the count clamped when they shrank, the floor kept at half.
func TestResizeFollowsTheCPUs(t *testing.T) {
	c := NewController(DefaultPolicy(2), 2)
	for range c.pol.DropAfter {
		c.Step(contended)
	}
	if c.Procs() != 1 {
		t.Fatalf("%d Ps after contention; want 1", c.Procs())
	}
	for _, step := range []struct{ cpus, procs, min int }{
		{4, 4, 2}, // grew: all of them, as Go would
		{4, 4, 2}, // unchanged
		{3, 3, 2}, // shrank below the count
		{8, 8, 4},
		{1, 1, 1},
		{0, 1, 1}, // nonsense is ignored
	} {
		if n := c.Resize(step.cpus); n != step.procs || c.Procs() != n || c.pol.Min != step.min || (step.cpus > 0 && c.pol.Max != step.cpus) {
			t.Fatalf("Resize(%d) = %d (Procs %d, range %d–%d); want %d, floor %d", step.cpus, n, c.Procs(), c.pol.Min, c.pol.Max, step.procs, step.min)
		}
	}
	c = NewController(DefaultPolicy(8), 8)
	for range c.pol.DropAfter * 3 {
		c.Step(Sample{Interval: tick, Run: cpus(4), Wait: cpus(4)})
	}
	if c.Procs() != 5 {
		t.Fatalf("%d Ps after three drops from 8; want 5", c.Procs())
	}
	if n := c.Resize(6); n != 5 || c.pol.Min != 3 {
		t.Fatalf("Resize(6) from 5 of 8 = %d, floor %d; want 5, floor 3", n, c.pol.Min)
	}
}

// run follows the CPUs the process may use (Go's runtime no longer does once
// GOMAXPROCS was set): it sets the count when they change, and logs it.
func TestRunFollowsTheCPULimit(t *testing.T) {
	pol := DefaultPolicy(2)
	pol.Every = time.Millisecond
	pol.LimitEvery = pol.Every
	steady := Sample{Interval: tick, Run: cpus(0.3), Wait: cpus(0.01), HostIdle: cpus(1)}
	samples := []Sample{steady, steady, steady, steady, steady}
	limits := []int{2, 4, 4, 1, 1}
	calls, logged := runScript(t, pol, samples, func() (int, bool) {
		if len(limits) == 0 {
			return 1, true
		}
		n := limits[0]
		limits = limits[1:]
		return n, true
	})
	if fmt.Sprint(calls) != "[4 1]" {
		t.Fatalf("GOMAXPROCS set to %v; want [4 1]: all four CPUs once allowed, then one", calls)
	}
	if n := strings.Count(logged, "CPUs the process may use changed"); n != 2 {
		t.Errorf("%d limit changes logged; want 2:\n%s", n, logged)
	}
}
