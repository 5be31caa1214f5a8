package firewall

// Guard.Allow is on the per-connection hot path: one atomic load when no enabled
// firewall guards the NodeBalancer, one prefix lookup and an atomic add otherwise.

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// Guard is the firewall check of one NodeBalancer. The data plane keeps one per
// NodeBalancer for as long as the NodeBalancer exists and puts it in every snapshot;
// attaching, detaching, enabling, disabling or changing the rules of its firewall
// swaps what the Guard holds (Arm), so new clients see the change at once without
// any snapshot being rebuilt. A nil *Guard allows everything.
type Guard struct {
	nbID  int
	drops *Drops
	cur   atomic.Pointer[armed]
}

// armed is a Table with the NodeBalancer's drop counter of each of its rules.
type armed struct {
	t        *Table
	counters []*atomic.Uint64 // per rule, then the policy's
}

// NewGuard returns the Guard of NodeBalancer nbID, counting drops in drops. It
// allows everything until armed.
func NewGuard(nbID int, drops *Drops) *Guard { return &Guard{nbID: nbID, drops: drops} }

// Arm makes t decide for new clients; nil (no firewall, or a disabled one) lets
// everything in. Connections already accepted are not affected.
func (g *Guard) Arm(t *Table) {
	if t == nil {
		g.cur.Store(nil)
		return
	}
	if a := g.cur.Load(); a != nil && a.t == t {
		return
	}
	a := &armed{t: t, counters: make([]*atomic.Uint64, len(t.names))}
	for i, name := range t.names {
		a.counters[i] = g.drops.counter(g.nbID, name)
	}
	g.cur.Store(a)
}

// Armed returns the Table deciding now, nil when everything is let in.
func (g *Guard) Armed() *Table {
	if g == nil {
		return nil
	}
	if a := g.cur.Load(); a != nil {
		return a.t
	}
	return nil
}

// Allow tells whether a new client from addr to port over proto may in. When it may
// not, rule names the rule (or "inbound_policy") that dropped it and the drop is
// counted. This is the check the tcp, http and https listeners make on accept and
// the UDP path makes per new session.
func (g *Guard) Allow(addr netip.Addr, proto Proto, port uint16) (ok bool, rule string) {
	if g == nil {
		return true, ""
	}
	a := g.cur.Load()
	if a == nil {
		return true, ""
	}
	accept, i := a.t.Decide(addr, proto, port)
	if accept {
		return true, ""
	}
	if i < 0 {
		i = len(a.counters) - 1
	}
	a.counters[i].Add(1)
	return false, a.t.names[i]
}

// Drops holds the dropped-connection counters by NodeBalancer and rule name. A
// counter is looked up when a Guard is armed, never per connection, and outlives
// rule changes so that the count stays monotonic.
type Drops struct {
	mu sync.Mutex
	m  map[dropKey]*atomic.Uint64
}

type dropKey struct {
	nbID int
	rule string
}

// NewDrops returns an empty Drops.
func NewDrops() *Drops { return &Drops{m: map[dropKey]*atomic.Uint64{}} }

func (d *Drops) counter(nbID int, rule string) *atomic.Uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dropKey{nbID, rule}
	c := d.m[k]
	if c == nil {
		c = new(atomic.Uint64)
		d.m[k] = c
	}
	return c
}

// Each calls fn with every counter: NodeBalancer, rule name and drops so far.
func (d *Drops) Each(fn func(nbID int, rule string, n uint64)) {
	d.mu.Lock()
	snap := make(map[dropKey]uint64, len(d.m))
	for k, c := range d.m {
		snap[k] = c.Load()
	}
	d.mu.Unlock()
	for k, n := range snap {
		fn(k.nbID, k.rule, n)
	}
}

// Retain forgets the counters of NodeBalancers not in keep.
func (d *Drops) Retain(keep map[int]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.m {
		if !keep[k.nbID] {
			delete(d.m, k)
		}
	}
}
