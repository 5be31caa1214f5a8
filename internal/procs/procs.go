// Package procs adapts how many threads run Go code at once (GOMAXPROCS, the Ps) to
// the CPU time the host leaves the process.
//
// Go runs one P per CPU it may use. On a host whose CPUs are also busy with other
// work (the backends, a load generator, other services), a second P does not buy
// a second CPU: it buys a second thread that the kernel's scheduler keeps waiting
// while it holds work, and every connection queued on that P waits a scheduler
// slice (1–4 ms) with it. On the 2-core bench host, with wrk and the backends on the
// same cores, one P served as many requests as two and cut the keep-alive p99 from
// about 5 ms to about 2.5 ms (bench/README.md, "Adapting the number of Ps").
//
// A Controller looks at the process's threads every Policy.Every: how long they ran
// and how long they waited, runnable, for a CPU (/proc/self/task/*/schedstat), and
// how much of the host's CPU time was idle (/proc/stat). It drops a P when the
// threads waited about as long as they ran (the CPUs are oversubscribed), down to
// half the Ps Go would run, and adds one back when the Ps are saturated while the
// host has a CPU idle. After dropping a P it waits before trying more again, longer
// each time a raised count had to be dropped again soon, so that it does not swing.
//
// Go would run one P per CPU the process may use, capped by its cgroup's CPU limit,
// and follows both while nothing has set GOMAXPROCS. Once the controller has set it,
// Run follows them instead, reading them every Policy.LimitEvery, and moves its range
// with them (Controller.Resize).
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"time"
)

// Policy is how the Controller decides.
type Policy struct {
	// Max is the most Ps it runs (the count Go chose at start, from the CPUs the
	// process may use; Run moves it when they change); Min, the fewest (at least 1).
	Max, Min int
	// Every is how often it samples.
	Every time.Duration
	// DropWait: drop a P when the threads waited for a CPU at least this long per
	// unit of time they ran, DropAfter samples in a row, while they ran at least
	// BusyFloor CPUs (a nearly idle process's waits are few and say little).
	DropWait  float64
	DropAfter int
	BusyFloor float64
	// AddBusy, AddIdle: add a P when the Ps were at least AddBusy busy and the host
	// had at least AddIdle CPUs idle, AddAfter samples in a row, and Hold has passed
	// since the last drop.
	AddBusy, AddIdle float64
	AddAfter         int
	// Hold is the first wait after a drop; a drop within Hold×4 of an add doubles
	// it, up to MaxHold.
	Hold, MaxHold time.Duration
	// LimitEvery is how often Run reads again how many CPUs the process may use
	// (Max follows it; see Controller.Resize).
	LimitEvery time.Duration
}

// DefaultPolicy returns the policy `serve` uses with max Ps. It never goes below
// half of max: the gain was measured going from two Ps to one on a 2-core host, and a
// large host whose CPUs are busy with other work may still need most of its Ps.
func DefaultPolicy(max int) Policy {
	return Policy{
		Max: max, Min: (max + 1) / 2,
		Every:    250 * time.Millisecond,
		DropWait: 0.5, DropAfter: 2, BusyFloor: 0.5,
		AddBusy: 0.9, AddIdle: 0.5, AddAfter: 4,
		Hold: 10 * time.Second, MaxHold: 5 * time.Minute,
		LimitEvery: time.Second,
	}
}

// Sample is what the process's threads and the host did during one interval.
type Sample struct {
	// Interval is its length.
	Interval time.Duration
	// Run and Wait are the CPU time the process's threads ran and the time they
	// waited, runnable, for a CPU.
	Run, Wait time.Duration
	// HostIdle is the host's idle CPU time (all CPUs).
	HostIdle time.Duration
}

// Controller decides the number of Ps from samples; Run applies its decisions.
// Its methods are not safe for concurrent use: one goroutine owns it.
type Controller struct {
	pol        Policy
	start      Policy // as given: Resize keeps its Min's share of Max
	procs      int
	drops      int // samples in a row that call for a drop
	adds       int // samples in a row that call for an add
	hold       time.Duration
	now        time.Duration // sum of the intervals seen
	lastDrop   time.Duration // when the last drop was, -1 for never
	lastAdd    time.Duration // when the last add was, -1 for never
	lastReason string
}

// NewController starts at procs Ps (clamped to the policy's range).
func NewController(pol Policy, procs int) *Controller {
	pol.Min = max(pol.Min, 1)
	pol.Max = max(pol.Max, pol.Min)
	return &Controller{pol: pol, start: pol, procs: min(max(procs, pol.Min), pol.Max), hold: pol.Hold, lastDrop: -1, lastAdd: -1}
}

// Resize makes n the most Ps (the CPUs the process may use changed: its cgroup's
// CPU limit or its affinity), keeps the fewest at the share of the most that the
// policy began with (half, by default), and returns the count to run now: all n
// when the most grew, as Go itself would, or the count clamped into the new range
// when it shrank.
func (c *Controller) Resize(n int) int {
	if n < 1 || n == c.pol.Max {
		return c.procs
	}
	grew := n > c.pol.Max
	c.pol.Min = max(1, min(n, (c.start.Min*n+c.start.Max-1)/c.start.Max))
	c.pol.Max = n
	if grew {
		c.procs = n
	}
	c.procs = min(max(c.procs, c.pol.Min), n)
	c.drops, c.adds = 0, 0
	c.lastReason = "the process may use " + strconv.Itoa(n) + " CPUs"
	return c.procs
}

// Procs is the count the controller runs now.
func (c *Controller) Procs() int { return c.procs }

// Reason says why the last change was made.
func (c *Controller) Reason() string { return c.lastReason }

// Step takes the sample of the interval that just ended and returns the number of
// Ps to run from now on.
func (c *Controller) Step(s Sample) int {
	c.now += s.Interval
	if s.Interval <= 0 || s.Run <= 0 {
		c.drops, c.adds = 0, 0
		return c.procs
	}
	cpus := float64(s.Run) / float64(s.Interval)
	busy := cpus / float64(c.procs)
	waited := float64(s.Wait) / float64(s.Run)
	idle := float64(s.HostIdle) / float64(s.Interval)

	if c.procs > c.pol.Min && cpus >= c.pol.BusyFloor && waited >= c.pol.DropWait {
		c.drops++
	} else {
		c.drops = 0
	}
	if c.procs < c.pol.Max && busy >= c.pol.AddBusy && idle >= c.pol.AddIdle && waited < c.pol.DropWait {
		c.adds++
	} else {
		c.adds = 0
	}
	switch {
	case c.drops >= c.pol.DropAfter:
		if c.lastAdd >= 0 && c.now-c.lastAdd <= 4*c.hold {
			c.hold = min(2*c.hold, c.pol.MaxHold)
		} else if c.lastAdd >= 0 {
			c.hold = c.pol.Hold
		}
		c.procs--
		c.drops, c.adds, c.lastDrop = 0, 0, c.now
		c.lastReason = "threads waited for a CPU " + ratio(waited) + " of the time they ran"
	case c.adds >= c.pol.AddAfter && (c.lastDrop < 0 || c.now-c.lastDrop >= c.hold):
		c.procs++
		c.drops, c.adds, c.lastAdd = 0, 0, c.now
		c.lastReason = "Ps " + ratio(busy) + " busy with " + ratio(idle) + " of a CPU idle"
	}
	return c.procs
}

// ratio formats x as a percentage.
func ratio(x float64) string { return strconv.Itoa(int(x*100+0.5)) + "%" }

// sampler reads Samples from the system.
type sampler interface {
	sample() (Sample, error)
}

// Run samples every pol.Every until ctx ends and sets GOMAXPROCS to the
// controller's count whenever it changes, logging each change. It returns at once
// where the system offers no thread statistics (not Linux) or when pol.Max is 1.
func Run(ctx context.Context, pol Policy, log *slog.Logger) error {
	if pol.Max <= max(pol.Min, 1) {
		return nil
	}
	s, err := newSampler()
	if err != nil {
		log.Info("procs: not adapting the number of Ps", "reason", err.Error())
		return nil
	}
	log.Info("procs: adapting the number of Ps to the CPU the host leaves", "max", pol.Max)
	return run(ctx, pol, s, runtime.GOMAXPROCS, newLimit(), log)
}

// run is Run over a given sampler, GOMAXPROCS setter and reader of the Ps Go would
// choose now (limit; ok false when unknown).
//
// Once run has set GOMAXPROCS, Go's runtime no longer follows a change of the
// process's CPU limit or affinity; run follows it instead, every pol.LimitEvery,
// and moves Max (and the count) with it.
func run(ctx context.Context, pol Policy, s sampler, set func(int) int, limit func() (int, bool), log *slog.Logger) error {
	c := NewController(pol, set(0))
	t := time.NewTicker(pol.Every)
	defer t.Stop()
	var sinceLimit time.Duration
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if sinceLimit += pol.Every; pol.LimitEvery > 0 && sinceLimit >= pol.LimitEvery {
			sinceLimit = 0
			if n, ok := limit(); ok && n != c.pol.Max {
				before, was := c.Procs(), c.pol.Max
				after := c.Resize(n)
				set(after)
				log.Info("procs: the CPUs the process may use changed", "max_from", was, "max_to", n, "from", before, "to", after)
			}
		}
		smp, err := s.sample()
		if err != nil {
			log.Warn("procs: reading thread statistics", "err", err)
			continue
		}
		before := c.Procs()
		if log.Enabled(ctx, slog.LevelDebug) {
			log.Debug("procs: sample", "procs", before, "run", smp.Run, "wait", smp.Wait, "host_idle", smp.HostIdle, "interval", smp.Interval)
		}
		if n := c.Step(smp); n != before {
			set(n)
			log.Info("procs: changed the number of Ps", "from", before, "to", n, "of", c.pol.Max, "because", c.Reason())
		}
	}
}
