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
	wg      sync.WaitGroup  // node goroutines

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
		client: &http.Client{
			Transport: newTransport(dialer),
			// A 3xx passes as it is; following it could leave the node.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	c.probeFn = c.probe
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
	for _, cs := range c.configs {
		for _, n := range cs.nodes {
			c.startLocked(n, cs.spec)
		}
	}
	c.mu.Unlock()

	c.deliver()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-c.notify:
			c.deliver()
		}
	}

	c.mu.Lock()
	c.stopped = true
	for _, n := range c.nodes {
		if n.cancel != nil {
			n.cancel()
			n.cancel = nil
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
		wake:      make(chan struct{}, 1),
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

// needsGoroutine reports whether a node in mode under cs has anything to do:
// active checks to run, or passive trips to apply.
func needsGoroutine(cs *checkSpec, mode model.Mode) bool {
	return mode != model.ModeReject && (cs.active() || cs.Passive)
}

// startLocked starts the node's goroutine if Run is running and the node
// needs one. c.mu is held.
func (c *Checker) startLocked(n *Node, cs *checkSpec) {
	if c.runCtx == nil || c.stopped || n.cancel != nil || !needsGoroutine(cs, n.mode) {
		return
	}
	ctx, cancel := context.WithCancel(c.runCtx)
	n.cancel = cancel
	n.mu.Lock()
	gen := n.gen
	n.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if cs.active() {
			c.runActive(ctx, n, gen, cs)
		} else {
			c.runPassive(ctx, n, gen, cs)
		}
	}()
}

// stopLocked stops the node's goroutine, if any; from now on nothing it
// learns changes the node's status. c.mu is held.
func (c *Checker) stopLocked(n *Node) {
	n.mu.Lock()
	n.gen++
	n.mu.Unlock()
	n.passiveOn.Store(false)
	if n.cancel != nil {
		n.cancel()
		n.cancel = nil
	}
}

// probeResult is the outcome of one active check.
type probeResult struct {
	err     error
	latency time.Duration
}

// runActive is the goroutine of a node with active checks: it runs them on
// the node's schedule, one at a time, and applies passive trips as they come.
func (c *Checker) runActive(ctx context.Context, n *Node, gen uint64, cs *checkSpec) {
	origin := time.Now()
	base := origin.Add(randBelow(cs.Interval))
	jmax := jitterMax(cs.Interval, cs.Timeout)
	timer := time.NewTimer(randBelow(initialDelayMax(cs.Interval)))
	defer timer.Stop()
	results := make(chan probeResult, 1)
	probing := false
	var start time.Time
	for {
		select {
		case <-ctx.Done():
			if probing {
				<-results // the check's context ends with ctx
			}
			return
		case <-timer.C:
			probing = true
			start = time.Now()
			go func(start time.Time) {
				err := c.probeFn(ctx, n, cs)
				results <- probeResult{err: err, latency: time.Since(start)}
			}(start)
		case r := <-results:
			probing = false
			if !c.applyActive(n, gen, r, start) {
				return
			}
			end := time.Now()
			timer.Reset(nextCheck(base, cs.Interval, start, end, randBelow(jmax)).Sub(end))
		case <-n.wake:
			if ok, _ := c.applyTrip(n, gen, time.Now()); !ok {
				if probing {
					<-results
				}
				return
			}
		}
	}
}

// runPassive is the goroutine of a node with passive checks only: it applies
// trips and brings the node back after the cool-down.
func (c *Checker) runPassive(ctx context.Context, n *Node, gen uint64, cs *checkSpec) {
	cooldown := c.opts.PassiveCooldown
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var cool <-chan time.Time
	n.mu.Lock()
	at, waiting := n.m.coolAt(cooldown)
	n.mu.Unlock()
	if waiting { // DOWN from before a settings change: keep its deadline
		timer.Reset(time.Until(at))
		cool = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
			ok, tripped := c.applyTrip(n, gen, time.Now())
			if !ok {
				return
			}
			if tripped {
				timer.Reset(cooldown)
				cool = timer.C
			}
		case <-cool:
			cool = nil
			if !c.applyCool(n, gen, time.Now()) {
				return
			}
		}
	}
}

// applyActive records one check result; it reports false when the node's
// goroutine has been superseded and must end.
func (c *Checker) applyActive(n *Node, gen uint64, r probeResult, start time.Time) bool {
	n.mu.Lock()
	if n.gen != gen {
		n.mu.Unlock()
		return false
	}
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
