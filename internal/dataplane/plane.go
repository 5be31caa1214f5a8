// Package dataplane turns the store's desired state into listening sockets: one
// listener per config on its NodeBalancer's ipv4:port, proxying tcp (L4, spliced) or
// http/https (L7) to the config's nodes. It never takes orders: it watches the store
// and converges, swapping immutable snapshots atomically so connections in flight keep
// the snapshot they started with.
package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/httpproxy"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/throttle"
)

// Timeouts bound how long the data plane waits on clients and nodes.
type Timeouts struct {
	// Connect bounds a connection attempt to a node.
	Connect time.Duration
	// HalfClose bounds how long a tcp session may stay half-closed.
	HalfClose time.Duration
	// TLSHandshake bounds an https client's handshake.
	TLSHandshake time.Duration
	// TCPIdle, when positive, ends a tcp session in which no byte has moved either
	// way for that long (serve's --tcp-idle-timeout). Zero: sessions are ended only by
	// their ends, or by keep-alive when a peer vanishes.
	TCPIdle time.Duration
}

// DefaultTimeouts are what a production balancer ships with.
var DefaultTimeouts = Timeouts{Connect: 5 * time.Second, HalfClose: 30 * time.Second, TLSHandshake: 10 * time.Second}

// Options configure a Plane.
type Options struct {
	// Log receives listener events; never one line per connection.
	Log *slog.Logger
	// MaxConns caps concurrent client connections across every listener.
	MaxConns int
	// BackendSource, when valid, is the local address of connections to nodes.
	BackendSource netip.Addr
	// Timeouts; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// Grace bounds how long connections of a removed listener may run on.
	Grace time.Duration
	// CookieKey keys the opaque NB_SRVID cookie values.
	CookieKey []byte
	// Stats, when set, receives the counters of every NodeBalancer, config and node.
	Stats *stats.Registry
	// Health checks the nodes of every config; its OnChange should call
	// Plane.StatusChanged. A checker without checks is made when nil.
	Health *health.Checker
	// AccessLog, when set, receives every finished http request; it must not block.
	AccessLog func(nodeBalancerID, configID int, e httpproxy.AccessEntry)
	// TCPAccessLog, when set, receives every finished tcp connection; it must not block.
	TCPAccessLog func(nodeBalancerID, configID int, e stats.TCPEntry)
	// FirewallDrops counts connections dropped by firewalls; one is made when nil.
	FirewallDrops *firewall.Drops
	// DropLog, when set, receives every connection a firewall dropped, with the name
	// of the rule that did; it must not block.
	DropLog func(nodeBalancerID, configID int, client, local netip.AddrPort, rule string)
}

// Plane is the running data plane.
type Plane struct {
	opts   Options
	log    *slog.Logger
	dialer net.Dialer
	start  time.Time
	active atomic.Int64 // client connections across every listener
	busy   atomic.Int64 // refused http(s) clients being answered 503 (answerBusy)

	mu        sync.Mutex // reconcile state; never taken per connection
	listeners map[int]*listener
	backends  map[backendKey]*backend
	limiters  map[int]*limiterEntry
	sticky    map[int]*balance.StickyTable
	failed    map[int]error            // configs whose listener could not be opened
	guards    map[int]*firewall.Guard  // by NodeBalancer, for as long as it exists
	fwTables  map[int]compiledFirewall // by firewall id
	closing   sync.WaitGroup
	ready     atomic.Bool
	accessLog accessLogger
}

type backendKey struct {
	id   int
	addr netip.AddrPort
}

type limiterEntry struct {
	perSecond int
	l         *throttle.Limiter
}

// New returns a Plane with no listeners; Reconcile or Run give it some.
func New(o Options) *Plane {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 10000
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	d := DefaultTimeouts
	if o.Timeouts.Connect > 0 {
		d.Connect = o.Timeouts.Connect
	}
	if o.Timeouts.HalfClose > 0 {
		d.HalfClose = o.Timeouts.HalfClose
	}
	if o.Timeouts.TLSHandshake > 0 {
		d.TLSHandshake = o.Timeouts.TLSHandshake
	}
	d.TCPIdle = max(o.Timeouts.TCPIdle, 0)
	o.Timeouts = d
	if o.Stats == nil {
		o.Stats = stats.NewRegistry()
	}
	if o.Health == nil {
		o.Health = health.New(health.Options{Logger: o.Log})
	}
	if o.FirewallDrops == nil {
		o.FirewallDrops = firewall.NewDrops()
	}
	p := &Plane{
		opts:      o,
		log:       o.Log,
		start:     time.Now(),
		listeners: map[int]*listener{},
		backends:  map[backendKey]*backend{},
		limiters:  map[int]*limiterEntry{},
		sticky:    map[int]*balance.StickyTable{},
		failed:    map[int]error{},
		guards:    map[int]*firewall.Guard{},
		fwTables:  map[int]compiledFirewall{},
	}
	if o.AccessLog != nil {
		p.accessLog = func(s *snapshot, e httpproxy.AccessEntry) { o.AccessLog(s.nbID, s.cfg.ID, e) }
	}
	// Keep-alive towards nodes is not set at the connect, where it would cost every
	// session four system calls, but by keepAliveLater on sessions that last.
	p.dialer = net.Dialer{Timeout: o.Timeouts.Connect, KeepAlive: -1}
	if o.BackendSource.IsValid() {
		p.dialer.LocalAddr = &net.TCPAddr{IP: o.BackendSource.AsSlice()}
	}
	return p
}

// now is the monotonic clock the throttle and sticky table run on, in nanoseconds.
func (p *Plane) now() int64 { return int64(time.Since(p.start)) }

// dial connects to a node.
func (p *Plane) dial(addr netip.AddrPort) (*net.TCPConn, error) {
	c, err := p.dialer.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Ready reports whether the first state has been applied.
func (p *Plane) Ready() bool { return p.ready.Load() }

// Run applies the store's state now and after every change until ctx ends, then
// closes every listener within the grace period.
func (p *Plane) Run(ctx context.Context, db *store.DB) error {
	w := db.Watch(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	apply := func() {
		st, err := db.State()
		if err != nil {
			p.log.Error("read desired state", "err", err)
			return
		}
		p.Reconcile(st)
	}
	apply()
	p.ready.Store(true)
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			p.Close()
			return nil
		case <-w:
			apply()
		case <-tick.C:
			p.maintain(i%3 == 0, apply)
		}
	}
}

// maintain runs once a second: it refreshes pick tables (a status change that raced a
// snapshot swap is picked up here), sweeps expired sticky pins, and every few seconds
// retries listeners that could not be opened.
func (p *Plane) maintain(retry bool, apply func()) {
	p.mu.Lock()
	failed := len(p.failed) > 0
	snaps := make([]*snapshot, 0, len(p.listeners))
	for _, l := range p.listeners {
		snaps = append(snaps, l.snap.Load())
	}
	p.mu.Unlock()
	now := p.now()
	for _, s := range snaps {
		s.pool.Refresh()
		if s.sticky != nil {
			s.sticky.Sweep(now)
		}
	}
	if retry && failed {
		apply()
	}
}

// Close closes every listener, letting connections finish within the grace period.
func (p *Plane) Close() {
	p.mu.Lock()
	for id, l := range p.listeners {
		p.retire(l)
		delete(p.listeners, id)
	}
	p.mu.Unlock()
	p.closing.Wait()
}

// retire stops l accepting now and drains it in the background. p.mu is held.
func (p *Plane) retire(l *listener) {
	l.closeSockets()
	p.closing.Add(1)
	go func() {
		defer p.closing.Done()
		l.close(p.opts.Grace)
	}()
}

// Reconcile converges listeners, pools and node state to st.
func (p *Plane) Reconcile(st store.State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Guards first: a listener opened below for a NodeBalancer created with a
	// firewall must not take a client before its guard is armed.
	p.armFirewalls(firewallsOf(st))
	wantCfg := map[int]bool{}
	wantBackend := map[backendKey]bool{}
	wantNB := map[int]bool{}
	for _, nb := range st.NodeBalancers {
		wantNB[nb.ID] = true
		ips := frontendIPs(nb.NodeBalancer)
		if len(ips) == 0 {
			p.log.Error("nodebalancer has no usable ipv4", "nodebalancer_id", nb.ID, "ipv4", nb.IPv4)
			continue
		}
		limiter := p.limiter(nb.ID, nb.ClientConnThrottle)
		for _, c := range nb.Configs {
			wantCfg[c.ID] = true
			addrs := listenAddrs(ips, c.Port)
			if l := p.listeners[c.ID]; l != nil && l.serves(c, limiter, addrs) {
				// Unchanged: building pick tables again would cost time for nothing
				// (tens of ms for a thousand nodes).
				s := l.snap.Load()
				for i := 0; i < s.pool.Len(); i++ {
					n := s.pool.Node(i)
					wantBackend[backendKey{n.ID, n.Addr}] = true
				}
				continue
			}
			s, err := p.snapshot(nb.NodeBalancer, c, limiter, wantBackend)
			if err != nil {
				p.log.Error("config cannot be served", "nodebalancer_id", nb.ID, "config_id", c.ID, "err", err)
				p.failed[c.ID] = err
				continue
			}
			p.place(c.ID, addrs, c.Protocol, s)
		}
	}
	for id, l := range p.listeners {
		if !wantCfg[id] {
			p.opts.Health.Remove(id)
			p.retire(l)
			delete(p.listeners, id)
			p.log.Info("listener closed", "config_id", id, "addr", l.addr.String())
		}
	}
	for id := range p.failed {
		if !wantCfg[id] {
			delete(p.failed, id)
		}
	}
	for id := range p.sticky {
		if !wantCfg[id] {
			delete(p.sticky, id)
		}
	}
	for id := range p.limiters {
		if !wantNB[id] {
			delete(p.limiters, id)
		}
	}

	for k, b := range p.backends {
		if !wantBackend[k] {
			b.close()
			delete(p.backends, k)
		}
	}
	p.opts.Stats.Retain(wantNB, wantCfg, nodeIDs(wantBackend))
}

// nodeIDs returns the node IDs of a set of backends.
func nodeIDs(m map[backendKey]bool) map[int]bool {
	out := make(map[int]bool, len(m))
	for k := range m {
		out[k.id] = true
	}
	return out
}

// place makes sure config id listens on addrs (its NodeBalancer's ipv4 and ipv6 at
// the config's port) with protocol and serves s. p.mu is held.
func (p *Plane) place(id int, addrs []netip.AddrPort, proto model.Protocol, s *snapshot) {
	l := p.listeners[id]
	if l != nil && (!slices.Equal(l.want, addrs) || l.protocol != proto) {
		p.retire(l)
		delete(p.listeners, id)
		p.log.Info("listener moving", "config_id", id, "from", fmt.Sprint(l.addrs), "to", fmt.Sprint(addrs), "protocol", string(proto))
		l = nil
	}
	if l == nil {
		lns, bound, skipped, err := listenAll(addrs)
		if skipped != nil {
			// Not retried until the config or its NodeBalancer changes: the IPv6 pool
			// needs the host set up for it (docs/design.md, IPv6).
			p.log.Error("cannot listen on every address; serving the others", "config_id", id, "err", skipped)
		}
		if err != nil {
			if _, seen := p.failed[id]; !seen {
				p.log.Error("cannot listen", "config_id", id, "addr", fmt.Sprint(addrs), "err", err)
			}
			p.failed[id] = err
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		l = &listener{plane: p, configID: id, addr: bound[0], want: addrs, addrs: bound, protocol: proto, lns: lns, ctx: ctx, cancel: cancel}
		l.setSnapshot(s)
		l.wg.Add(len(lns))
		for i := range lns {
			go l.serve(i)
		}
		p.listeners[id] = l
		delete(p.failed, id)
		p.log.Info("listener open", "config_id", id, "addr", fmt.Sprint(bound), "protocol", string(proto))
	}
	l.setSnapshot(s)
}

// frontendIPs are the addresses of nb its configs listen on: its ipv4, then its ipv6
// when it has one.
func frontendIPs(nb model.NodeBalancer) []netip.Addr {
	var out []netip.Addr
	for _, s := range []string{nb.IPv4, nb.IPv6} {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// listenAddrs are ips at port.
func listenAddrs(ips []netip.Addr, port int) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip, uint16(port))
	}
	return out
}

// limiter returns the throttle of NodeBalancer id, nil when throttling is off.
func (p *Plane) limiter(id, perSecond int) *throttle.Limiter {
	if perSecond <= 0 {
		delete(p.limiters, id)
		return nil
	}
	if e := p.limiters[id]; e != nil && e.perSecond == perSecond {
		return e.l
	}
	l, err := throttle.New(perSecond, throttle.Options{})
	if err != nil { // the API keeps client_conn_throttle in range; never refuse traffic over it
		p.log.Error("throttle not applied", "nodebalancer_id", id, "err", err)
		return nil
	}
	p.limiters[id] = &limiterEntry{perSecond, l}
	return l
}

// Listening returns the address each config listens on, for tests and diagnostics.
func (p *Plane) Listening() map[int]netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int]netip.AddrPort{}
	for id, l := range p.listeners {
		out[id] = l.addr
	}
	return out
}

// Failed returns why each config that should listen does not.
func (p *Plane) Failed() map[int]error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int]error{}
	for id, err := range p.failed {
		out[id] = err
	}
	return out
}

// StatusChanged follows a health status change of config id's nodes: it rebuilds the
// pick tables and drops the sticky pins of nodes that went DOWN. The health
// checker's OnChange calls it.
func (p *Plane) StatusChanged(id int) {
	p.mu.Lock()
	l := p.listeners[id]
	p.mu.Unlock()
	if l == nil {
		return
	}
	s := l.snap.Load()
	s.pool.Refresh()
	if s.sticky != nil {
		s.sticky.PurgeFunc(func(nodeID int) bool {
			n := s.pool.Lookup(nodeID)
			return n == nil || n.State.Status() == balance.StatusDown
		})
	}
}
