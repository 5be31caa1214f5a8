package health

// This file holds the hot path: Node.Failure and Node.Success run on the
// data plane for every proxied connection or request. They use only the
// node's own atomics: no lock, no map, no allocation.

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Node is the health checker's handle on one backend node of one
// configuration. The data plane keeps it beside the node (for instance in
// balance.Node.Data) and reports the outcome of real traffic through Failure
// and Success; State is the balance.State whose status the checker sets.
//
// A Node lives as long as the node keeps its ID and address in its
// configuration; Set returns a new Node when the address changes. Reports to a
// Node that has been removed or replaced are ignored.
type Node struct {
	// Hot path: written by the data plane.
	passiveOn    atomic.Bool  // passive checks apply (check_passive and not reject)
	fails        atomic.Int32 // failures on real traffic since the last success or trip
	firstFail    atomic.Int64 // caller's clock at the first of them, in nanoseconds
	passiveFails atomic.Uint64
	tripPending  atomic.Bool  // the node is queued on trips
	trips        chan<- *Node // the checker's queue of passive trips to apply
	threshold    int32        // failures that trip
	window       int64        // nanoseconds within which they must fall

	id       int
	configID int
	addr     netip.AddrPort
	addrOK   bool
	state    *balance.State

	// Guarded by Checker.mu.
	mode    model.Mode
	running bool // checks are scheduled / passive trips applied for the node

	// Guarded by mu; written by the scheduler's workers, the trip applier and Set.
	mu          sync.Mutex
	gen         uint64 // bumped whenever the node's run (schedule, cool-down) restarts or stops
	m           machine
	lastErr     string
	spec        *checkSpec         // the settings the current run started with
	base        time.Time          // origin+phase of the node's check grid
	probeCancel context.CancelFunc // ends the check in flight; nil when none is
	coolTimer   *time.Timer        // ends a passive cool-down (check none)

	// Statistics, written by the node's goroutine.
	checks        atomic.Uint64
	checkFailures atomic.Uint64
	statusChanges atomic.Uint64
	passiveTrips  atomic.Uint64
	latencySum    atomic.Int64
	lastLatency   atomic.Int64
}

// ID returns the node's ID.
func (n *Node) ID() int { return n.id }

// ConfigID returns the ID of the node's configuration.
func (n *Node) ConfigID() int { return n.configID }

// Addr returns the address the node is checked (and reached) at.
func (n *Node) Addr() netip.AddrPort { return n.addr }

// State returns the node's live balance state. The checker sets its status;
// the data plane passes it to balance.NewPool so that picks follow it.
func (n *Node) State() *balance.State { return n.state }

// Status returns the node's status as the API shows it: DOWN for a reject
// node, Unknown without a verdict (before the first, or under check none).
func (n *Node) Status() model.NodeStatus { return toModel(n.state.Status()) }

// Failure reports that real traffic to the node failed. What counts is the
// caller's rule, spelled once there: a failed connect for tcp, and
// httpproxy.Result.Failed for http/https (a failed connect, a timeout, a broken
// response, or a 5xx other than 501 and 505). now is the
// caller's monotonic clock in nanoseconds (for instance time.Since of a fixed
// start, as balance.StickyTable takes); use one clock for every report. It
// never blocks, locks or allocates, and does nothing unless passive checks
// are on.
func (n *Node) Failure(now int64) {
	if !n.passiveOn.Load() {
		return
	}
	n.passiveFails.Add(1)
	var c int32
	if c = n.fails.Load(); c == 0 || now-n.firstFail.Load() > n.window {
		// A new run of failures. Concurrent reports may race here and lose a
		// count; passive checks are a statistical signal and tolerate it.
		n.firstFail.Store(now)
		n.fails.Store(1)
		c = 1
	} else {
		c = n.fails.Add(1)
	}
	if c >= n.threshold && n.tripPending.CompareAndSwap(false, true) {
		select {
		case n.trips <- n:
		default: // the queue is full: the next failure tries again
			n.tripPending.Store(false)
		}
	}
}

// Success reports that real traffic to the node succeeded (a connect that
// worked, a response that is not a passive failure), which ends any run of
// failures. It costs one atomic load when there was none.
func (n *Node) Success() {
	if n.fails.Load() != 0 {
		n.fails.Store(0)
	}
}

// toModel spells a balance status as the API does.
func toModel(s balance.Status) model.NodeStatus {
	switch s {
	case balance.StatusUp:
		return model.StatusUp
	case balance.StatusDown:
		return model.StatusDown
	}
	return model.StatusUnknown
}

// NodeStats are a node's health counters, for the stats package to export.
// Counters only grow while the Node lives.
type NodeStats struct {
	NodeID, ConfigID int
	Addr             netip.AddrPort
	Status           model.NodeStatus
	Checks           uint64        // active checks completed
	CheckFailures    uint64        // of which failed
	CheckLatencySum  time.Duration // total duration of the completed checks
	LastCheckLatency time.Duration // duration of the last completed check
	LastError        string        // why the last check failed; empty after a pass
	PassiveFailures  uint64        // failures reported on real traffic while passive checks were on
	PassiveTrips     uint64        // times passive checks took the node DOWN
	StatusChanges    uint64        // status transitions, including those caused by mode changes
}

// Stats returns the node's counters.
func (n *Node) Stats() NodeStats {
	n.mu.Lock()
	lastErr := n.lastErr
	n.mu.Unlock()
	return NodeStats{
		NodeID:           n.id,
		ConfigID:         n.configID,
		Addr:             n.addr,
		Status:           n.Status(),
		Checks:           n.checks.Load(),
		CheckFailures:    n.checkFailures.Load(),
		CheckLatencySum:  time.Duration(n.latencySum.Load()),
		LastCheckLatency: time.Duration(n.lastLatency.Load()),
		LastError:        lastErr,
		PassiveFailures:  n.passiveFails.Load(),
		PassiveTrips:     n.passiveTrips.Load(),
		StatusChanges:    n.statusChanges.Load(),
	}
}
