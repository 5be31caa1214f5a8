package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Defaults of the passive check rule (see the package doc).
const (
	DefaultPassiveThreshold = 3
	DefaultPassiveWindow    = 10 * time.Second
	DefaultPassiveCooldown  = 30 * time.Second
)

// Options configure a Checker. Zero fields take the defaults.
type Options struct {
	// Source is the local address check connections are made from (the
	// --backend-source flag); the zero value lets the system choose.
	Source netip.Addr
	// OnChange is called, from a single goroutine and without any of the
	// checker's locks held, after the status of one or more nodes of a
	// configuration changed; changes are coalesced, so one call may stand for
	// several. The data plane refreshes its pick tables and purges the sticky
	// entries of DOWN nodes. It is not called for the initial status of nodes
	// that Set has just returned.
	OnChange func(configID int)
	// Observer, when set, sees every completed check and status change.
	Observer Observer
	// Logger receives one line per status change; slog.Default() when nil.
	Logger *slog.Logger
	// PassiveThreshold failures within PassiveWindow take a node DOWN
	// (DefaultPassiveThreshold; 1 is Linode's rule).
	PassiveThreshold int
	// PassiveWindow bounds the time between the first and the last of those
	// failures (DefaultPassiveWindow).
	PassiveWindow time.Duration
	// PassiveCooldown is how long a node that passive checks took DOWN stays
	// DOWN in a configuration without active checks (DefaultPassiveCooldown).
	PassiveCooldown time.Duration
	// MaxBodyBytes is how much of a body an http_body check matches
	// (DefaultMaxBodyBytes).
	MaxBodyBytes int
	// MaxConcurrentChecks bounds the active checks in flight at once
	// (DefaultMaxConcurrentChecks). A check due while that many run waits for
	// one to end.
	MaxConcurrentChecks int
}

// Observer sees what the checker does, for metrics. Its methods are called
// from the checker's goroutines, concurrently, and must be fast and safe for
// concurrent use.
type Observer interface {
	// CheckDone is called after every active check; err is nil when it passed.
	CheckDone(configID, nodeID int, latency time.Duration, err error)
	// StatusChanged is called after every status transition of a node.
	StatusChanged(configID, nodeID int, from, to model.NodeStatus)
}

// Checker runs the active checks of every configuration it is given, applies
// the passive reports of the data plane and keeps each node's status. Create
// it with New, give it configurations with Set, and run it with Run; Set may
// be called before Run (checks then start with Run). All methods are safe for
// concurrent use.
type Checker struct {
	opts    Options
	log     *slog.Logger
	dialer  *net.Dialer
	client  *http.Client
	maxBody int
	probeFn prober

	mu      sync.RWMutex
	configs map[int]*configState
	nodes   map[int]*Node   // by node ID, for Status
	runCtx  context.Context // Run's context; nil before Run
	stopped bool            // Run has returned or is returning
	wg      sync.WaitGroup  // the scheduler and the checks in flight

	trips chan *Node // passive trips for Run to apply

	engine   *engine // runs connection and http checks on epoll (Linux); nil: goroutines
	noEngine bool    // tests that replace probeFn keep every check on goroutines

	schedMu   sync.Mutex
	heap      timerHeap     // every node's next active check
	schedWake chan struct{} // the earliest check changed
	slots     chan struct{} // one token per worker
	jobs      chan due      // checks handed to idle workers

	dirtyMu sync.Mutex
	dirty   map[int]struct{} // configurations whose nodes changed status
	notify  chan struct{}
}

// configState is what the checker holds for one configuration.
type configState struct {
	spec  *checkSpec
	nodes map[int]*Node
}

// New returns a Checker with the given options.
func New(o Options) *Checker {
	if o.PassiveThreshold < 1 {
		o.PassiveThreshold = DefaultPassiveThreshold
	}
	if o.PassiveWindow <= 0 {
		o.PassiveWindow = DefaultPassiveWindow
	}
	if o.PassiveCooldown <= 0 {
		o.PassiveCooldown = DefaultPassiveCooldown
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxConcurrentChecks <= 0 {
		o.MaxConcurrentChecks = DefaultMaxConcurrentChecks
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	dialer := &net.Dialer{KeepAlive: -1}
	if o.Source.IsValid() {
		dialer.LocalAddr = &net.TCPAddr{IP: o.Source.AsSlice(), Zone: o.Source.Zone()}
	}
	c := &Checker{
		opts:    o,
		log:     log,
		dialer:  dialer,
		maxBody: o.MaxBodyBytes,
		configs: make(map[int]*configState),
		nodes:   make(map[int]*Node),
		notify:  make(chan struct{}, 1),
		trips:   make(chan *Node, 1024),

		schedWake: make(chan struct{}, 1),
		slots:     make(chan struct{}, o.MaxConcurrentChecks),
		jobs:      make(chan due),
		client: &http.Client{
			Transport: newTransport(dialer),
			// A 3xx passes as it is; following it could leave the node.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	c.probeFn = c.runProbe
	return c
}

// Run runs the checks until ctx ends, then stops every check and returns nil
// once all of the checker's goroutines have ended. It may be called once.
func (c *Checker) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("health: Checker.Run called twice")
	}
	c.runCtx = ctx
	if !c.noEngine {
		c.engine = newEngine(c, c.opts.Source)
	}
	for _, cs := range c.configs {
		for _, n := range cs.nodes {
			c.startLocked(n, cs.spec)
		}
	}
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if c.engine != nil {
			c.engine.run(ctx) // the engine is the scheduler
		} else {
			c.schedule(ctx)
		}
	}()

	c.deliver()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-c.notify:
			c.deliver()
		case n := <-c.trips:
			c.trip(n)
		}
	}

	c.mu.Lock()
	c.stopped = true
	for _, cs := range c.configs {
		for _, n := range cs.nodes {
			c.stopLocked(n)
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Set tells the checker the check settings and node set of a configuration,
// creating it if new, and returns the handle of each node, in the order of
// nodes. Nodes with the same ID and address as before keep their handle,
// status and schedule; a node whose address changed gets a new handle (and a
// new balance.State); nodes left out stop being checked. A node whose address
// is not ip:port fails its active checks. Node IDs must be unique across
// configurations, as the API's are.
func (c *Checker) Set(configID int, spec Spec, nodes []model.Node) []*Node {
	out := make([]*Node, len(nodes))
	var events []event

	c.mu.Lock()
	cs := c.configs[configID]
	if cs == nil {
		cs = &configState{nodes: make(map[int]*Node)}
		c.configs[configID] = cs
	}
	prev := cs.spec
	spec2 := newCheckSpec(spec, prev)
	respec := prev != nil && prev.Spec != spec2.Spec
	cs.spec = spec2

	keep := make(map[int]*Node, len(nodes))
	for i, mn := range nodes {
		if n := keep[mn.ID]; n != nil { // the same ID twice: one node
			out[i] = n
			continue
		}
		addr, err := netip.ParseAddrPort(mn.Address)
		addrOK := err == nil
		n := cs.nodes[mn.ID]
		if n != nil && (n.addr != addr || n.addrOK != addrOK) {
			c.stopLocked(n)
			n = nil
		}
		if n == nil {
			n = c.newNode(configID, mn.ID, addr, addrOK, mn.Mode, spec2)
			c.startLocked(n, spec2)
		} else {
			events = c.updateLocked(n, mn.Mode, spec2, respec, events)
		}
		keep[mn.ID] = n
		c.nodes[mn.ID] = n
		out[i] = n
	}
	for id, n := range cs.nodes {
		if keep[id] != n {
			c.stopLocked(n)
			if c.nodes[id] == n {
				delete(c.nodes, id)
			}
		}
	}
	cs.nodes = keep
	c.mu.Unlock()

	c.emit(events)
	return out
}

// Remove stops checking every node of a configuration and forgets it.
func (c *Checker) Remove(configID int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.configs[configID]
	if cs == nil {
		return
	}
	for id, n := range cs.nodes {
		c.stopLocked(n)
		if c.nodes[id] == n {
			delete(c.nodes, id)
		}
	}
	delete(c.configs, configID)
}

// Lookup returns the handle of a node, or nil if no configuration has it.
func (c *Checker) Lookup(nodeID int) *Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.nodes[nodeID]
}

// NodeStats returns the counters of a node, false when no configuration has it.
func (c *Checker) NodeStats(nodeID int) (NodeStats, bool) {
	if n := c.Lookup(nodeID); n != nil {
		return n.Stats(), true
	}
	return NodeStats{}, false
}

// Status returns a node's status as the API shows it: DOWN for a reject node,
// Unknown for a node the checker does not know or has no verdict on (check none).
func (c *Checker) Status(nodeID int) model.NodeStatus {
	if n := c.Lookup(nodeID); n != nil {
		return n.Status()
	}
	return model.StatusUnknown
}

// Counts is how many nodes of a configuration are in each status. Linode's
// nodes_status shows Up and Down; Unknown is for nodes without a verdict yet.
type Counts struct {
	Up, Down, Unknown int
}

// Counts returns the status counts of a configuration's nodes (all zero for a
// configuration the checker does not know).
func (c *Checker) Counts(configID int) Counts {
	var k Counts
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cs := c.configs[configID]; cs != nil {
		for _, n := range cs.nodes {
			switch n.state.Status() {
			case balance.StatusUp:
				k.Up++
			case balance.StatusDown:
				k.Down++
			default:
				k.Unknown++
			}
		}
	}
	return k
}

// AppendStats appends the counters of every node to dst, ordered by
// configuration ID then node ID, and returns the extended slice.
func (c *Checker) AppendStats(dst []NodeStats) []NodeStats {
	c.mu.RLock()
	start := len(dst)
	for _, cs := range c.configs {
		for _, n := range cs.nodes {
			dst = append(dst, n.Stats())
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(dst[start:], func(a, b NodeStats) int {
		return cmp.Or(cmp.Compare(a.ConfigID, b.ConfigID), cmp.Compare(a.NodeID, b.NodeID))
	})
	return dst
}

// newNode creates the handle of a node entering a configuration.
func (c *Checker) newNode(configID, id int, addr netip.AddrPort, addrOK bool, mode model.Mode, cs *checkSpec) *Node {
	n := &Node{
		id:        id,
		configID:  configID,
		addr:      addr,
		addrOK:    addrOK,
		mode:      mode,
		state:     new(balance.State),
		trips:     c.trips,
		threshold: int32(min(c.opts.PassiveThreshold, 1<<30)),
		window:    int64(c.opts.PassiveWindow),
	}
	if mode == model.ModeReject {
		n.m = machine{status: balance.StatusDown, attempts: cs.Attempts}
	} else {
		n.m = newMachine(cs.Attempts)
		n.passiveOn.Store(cs.Passive)
	}
	n.state.SetStatus(n.m.status)
	return n
}

// updateLocked applies a mode or check change to a node that stays in its
// configuration. c.mu is held.
func (c *Checker) updateLocked(n *Node, mode model.Mode, cs *checkSpec, respec bool, events []event) []event {
	wasReject, isReject := n.mode == model.ModeReject, mode == model.ModeReject
	n.mode = mode
	switch {
	case isReject && !wasReject:
		c.stopLocked(n)
		n.mu.Lock()
		from := n.m.status
		n.m = machine{status: balance.StatusDown, attempts: cs.Attempts}
		events = n.setLocked(from, "mode reject", events)
		n.mu.Unlock()
	case wasReject && !isReject:
		n.mu.Lock()
		n.gen++
		from := n.m.status
		n.m = newMachine(cs.Attempts)
		events = n.setLocked(from, "mode "+string(mode), events)
		n.mu.Unlock()
		n.fails.Store(0)
		n.passiveOn.Store(cs.Passive)
		c.startLocked(n, cs)
	case respec && !isReject:
		c.stopLocked(n)
		n.mu.Lock()
		from := n.m.status
		n.m.respec(cs.active(), cs.Passive, cs.Attempts)
		events = n.setLocked(from, "check settings changed", events)
		n.mu.Unlock()
		n.fails.Store(0)
		n.passiveOn.Store(cs.Passive)
		c.startLocked(n, cs)
	}
	return events
}

// setLocked copies the machine's status into the balance state and records
// an event if it changed from from. n.mu is held.
func (n *Node) setLocked(from balance.Status, reason string, events []event) []event {
	if n.m.status == from {
		return events
	}
	n.state.SetStatus(n.m.status)
	return append(events, event{n: n, from: from, to: n.m.status, reason: reason})
}

// needsRun reports whether a node in mode under cs has anything to do: active
// checks to run, or passive trips to apply.
func needsRun(cs *checkSpec, mode model.Mode) bool {
	return mode != model.ModeReject && (cs.active() || cs.Passive)
}

// startLocked starts the node's run if Run is running and the node needs one:
// with active checks, its first check goes on the timer heap; with passive checks
// only, nothing runs until a trip (or a cool-down carried over from before a
// settings change). c.mu is held.
func (c *Checker) startLocked(n *Node, cs *checkSpec) {
	if c.runCtx == nil || c.stopped || n.running || !needsRun(cs, n.mode) {
		return
	}
	n.running = true
	now := time.Now()
	n.mu.Lock()
	n.spec = cs
	gen := n.gen
	var coolAt time.Time
	waiting := false
	if cs.active() {
		n.base = now.Add(randBelow(cs.Interval))
	} else {
		coolAt, waiting = n.m.coolAt(c.opts.PassiveCooldown)
	}
	n.mu.Unlock()
	switch {
	case cs.active():
		c.enqueue(due{at: now.Add(randBelow(initialDelayMax(cs.Interval))), n: n, gen: gen})
	case waiting: // DOWN from before a settings change: keep its deadline
		c.armCool(n, gen, time.Until(coolAt))
	}
}

// stopLocked stops the node's run: its scheduled check is void, the check in
// flight is cancelled, a cool-down is dropped, and from now on nothing it learns
// changes the node's status. c.mu is held.
func (c *Checker) stopLocked(n *Node) {
	n.mu.Lock()
	n.gen++
	if n.probeCancel != nil {
		n.probeCancel()
		n.probeCancel = nil
	}
	if n.coolTimer != nil {
		n.coolTimer.Stop()
		n.coolTimer = nil
	}
	n.mu.Unlock()
	n.passiveOn.Store(false)
	n.running = false
}

// probeResult is the outcome of one active check.
type probeResult struct {
	err     error
	latency time.Duration
}

// enqueue puts a node's next check on the heap, waking the scheduler when it is
// now the earliest.
func (c *Checker) enqueue(d due) {
	c.schedMu.Lock()
	c.heap.push(d)
	first := c.heap[0] == d
	c.schedMu.Unlock()
	if !first {
		return
	}
	if c.engine != nil {
		c.engine.wake()
		return
	}
	select {
	case c.schedWake <- struct{}{}:
	default:
	}
}

// schedule is the checker's one timer: it waits for the earliest due check and
// starts every check that is due, at most MaxConcurrentChecks at once.
func (c *Checker) schedule(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var ready []due
	for {
		c.schedMu.Lock()
		now := time.Now()
		ready = ready[:0]
		for len(c.heap) > 0 && !c.heap[0].at.After(now) {
			ready = append(ready, c.heap.pop())
		}
		wait := time.Hour
		if len(c.heap) > 0 {
			wait = c.heap[0].at.Sub(now)
		}
		c.schedMu.Unlock()
		for i, d := range ready {
			if !c.dispatch(ctx, d) {
				return
			}
			ready[i] = due{}
		}
		if len(ready) > 0 {
			continue // time went on while starting them
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-c.schedWake:
		case <-ctx.Done():
			return
		}
	}
}

// workerIdle is how long a worker waits for another check before it ends.
const workerIdle = 10 * time.Second

// dispatch hands d to an idle worker, or starts a worker for it while fewer than
// MaxConcurrentChecks run, or waits for a worker. Workers outlive one check so that
// a steady flow of checks reuses a few goroutines and their grown stacks. It
// reports false when ctx ended first.
func (c *Checker) dispatch(ctx context.Context, d due) bool {
	select {
	case c.jobs <- d:
		return true
	default:
	}
	select {
	case c.jobs <- d:
		return true
	case c.slots <- struct{}{}:
		c.wg.Add(1)
		go c.worker(ctx, d)
		return true
	case <-ctx.Done():
		return false
	}
}

// worker runs checks until none comes for workerIdle, or ctx ends.
func (c *Checker) worker(ctx context.Context, d due) {
	defer c.wg.Done()
	defer func() { <-c.slots }()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		c.check(ctx, d)
		idle.Reset(workerIdle)
		select {
		case d = <-c.jobs:
		case <-idle.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// check runs one scheduled check of a node, applies its result and schedules the
// next: at the next point of the node's grid after this one started, or when this
// one ended if that point has passed, so a node's checks never overlap.
func (c *Checker) check(ctx context.Context, d due) {
	n := d.n
	n.mu.Lock()
	if n.gen != d.gen {
		n.mu.Unlock()
		return
	}
	cs, base := n.spec, n.base
	pctx, cancel := context.WithCancel(ctx)
	n.probeCancel = cancel
	n.mu.Unlock()

	start := time.Now()
	err := c.probeFn(pctx, n, cs)
	cancel()
	c.complete(d, cs, base, start, err)
}

// complete records the result of node d.n's check of run d.gen that started at
// start under cs, and schedules its next check on the grid base+k·interval.
func (c *Checker) complete(d due, cs *checkSpec, base, start time.Time, err error) {
	r := probeResult{err: err, latency: time.Since(start)}
	if !c.applyActive(d.n, d.gen, r, start) {
		return
	}
	end := time.Now()
	jitter := randBelow(jitterMax(cs.Interval, cs.Timeout))
	c.enqueue(due{at: nextCheck(base, cs.Interval, start, end, jitter), n: d.n, gen: d.gen})
}

// trip applies a passive trip that a node queued, and with check none starts its
// cool-down.
func (c *Checker) trip(n *Node) {
	n.tripPending.Store(false)
	n.mu.Lock()
	gen, cs := n.gen, n.spec
	n.mu.Unlock()
	ok, tripped := c.applyTrip(n, gen, time.Now())
	if ok && tripped && cs != nil && !cs.active() {
		c.armCool(n, gen, c.opts.PassiveCooldown)
	}
}

// armCool brings the node of run gen back after d, unless its run ends first.
// The timer holds no goroutine while it waits.
func (c *Checker) armCool(n *Node, gen uint64, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gen != gen {
		return
	}
	if n.coolTimer != nil {
		n.coolTimer.Stop()
	}
	n.coolTimer = time.AfterFunc(d, func() { c.applyCool(n, gen, time.Now()) })
}

// applyActive records one check result; it reports false when the node's
// goroutine has been superseded and must end.
func (c *Checker) applyActive(n *Node, gen uint64, r probeResult, start time.Time) bool {
	n.mu.Lock()
	if n.gen != gen {
		n.mu.Unlock()
		return false
	}
	n.probeCancel = nil
	from := n.m.status
	changed := n.m.active(r.err == nil, start)
	if r.err != nil {
		n.lastErr = r.err.Error()
	} else {
		n.lastErr = ""
	}
	var ev []event
	if changed {
		ev = n.setLocked(from, "", nil)
	}
	to, attempts := n.m.status, n.m.attempts
	n.mu.Unlock()

	n.checks.Add(1)
	if r.err != nil {
		n.checkFailures.Add(1)
	}
	n.latencySum.Add(int64(r.latency))
	n.lastLatency.Store(int64(r.latency))
	if o := c.opts.Observer; o != nil {
		o.CheckDone(n.configID, n.id, r.latency, r.err)
	}
	if len(ev) > 0 {
		if to == balance.StatusUp {
			n.fails.Store(0)
			ev[0].reason = "check passed"
		} else {
			ev[0].reason = fmt.Sprintf("%d failed checks: %v", attempts, r.err)
		}
		c.emit(ev)
	}
	return true
}

// applyTrip applies a passive trip signalled by the data plane. ok is false
// when the node's goroutine has been superseded; tripped reports whether the
// node went DOWN.
func (c *Checker) applyTrip(n *Node, gen uint64, now time.Time) (ok, tripped bool) {
	// The signal may be stale: passive checks turned off, or a success since.
	if !n.passiveOn.Load() || n.fails.Load() < n.threshold {
		n.mu.Lock()
		ok = n.gen == gen
		n.mu.Unlock()
		return ok, false
	}
	n.mu.Lock()
	if n.gen != gen {
		n.mu.Unlock()
		return false, false
	}
	from := n.m.status
	var ev []event
	if n.m.trip(now) {
		ev = n.setLocked(from, fmt.Sprintf("passive checks: %d failures within %v", n.threshold, time.Duration(n.window)), nil)
	}
	n.mu.Unlock()
	n.fails.Store(0)
	if len(ev) == 0 {
		return true, false
	}
	n.passiveTrips.Add(1)
	c.emit(ev)
	return true, true
}

// applyCool ends a passive cool-down; it reports false when the node's
// goroutine has been superseded.
func (c *Checker) applyCool(n *Node, gen uint64, now time.Time) bool {
	n.mu.Lock()
	if n.gen != gen {
		n.mu.Unlock()
		return false
	}
	from := n.m.status
	var ev []event
	if n.m.cool(now, c.opts.PassiveCooldown) {
		ev = n.setLocked(from, "passive cool-down over", nil)
	}
	n.mu.Unlock()
	n.fails.Store(0)
	c.emit(ev)
	return true
}

// event is one status transition, reported once no lock is held.
type event struct {
	n        *Node
	from, to balance.Status
	reason   string
}

// emit counts, logs and publishes status transitions.
func (c *Checker) emit(events []event) {
	for _, e := range events {
		n := e.n
		n.statusChanges.Add(1)
		from, to := toModel(e.from), toModel(e.to)
		c.log.Info("node status changed", "config_id", n.configID, "node_id", n.id,
			"addr", n.addr.String(), "from", string(from), "to", string(to), "reason", e.reason)
		if o := c.opts.Observer; o != nil {
			o.StatusChanged(n.configID, n.id, from, to)
		}
		c.dirtyMu.Lock()
		if c.dirty == nil {
			c.dirty = make(map[int]struct{})
		}
		c.dirty[n.configID] = struct{}{}
		c.dirtyMu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

// deliver calls OnChange for every configuration whose nodes changed status
// since the last delivery and that the checker still has.
func (c *Checker) deliver() {
	c.dirtyMu.Lock()
	dirty := c.dirty
	c.dirty = nil
	c.dirtyMu.Unlock()
	if c.opts.OnChange == nil {
		return
	}
	for id := range dirty {
		c.mu.RLock()
		_, ok := c.configs[id]
		c.mu.RUnlock()
		if ok {
			c.opts.OnChange(id)
		}
	}
}
