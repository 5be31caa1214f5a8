// Package dataplane turns the store's desired state into listening sockets: one
// listener per config on its NodeBalancer's ipv4:port, proxying tcp (L4, spliced) or
// http/https (L7) to the config's nodes. It never takes orders: it watches the store
// and converges, swapping immutable snapshots atomically so connections in flight keep
// the snapshot they started with. The API may ask it to look at the store's change
// feed at once after a write committed (Plane.CatchUp); what it applies is still only
// what the store published.
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
	// UDPAccessLog, when set, receives every ended udp session; it must not block.
	UDPAccessLog func(nodeBalancerID, configID int, e stats.UDPEntry)
	// UDPSessionTimeout replaces udp_session_timeout, for tests only.
	UDPSessionTimeout time.Duration
	// FirewallDrops counts connections dropped by firewalls; one is made when nil.
	FirewallDrops *firewall.Drops
	// DropLog, when set, receives every connection a firewall dropped, with the name
	// of the rule that did; it must not block.
	DropLog func(nodeBalancerID, configID int, client, local netip.AddrPort, rule string)
	// Mirror, when set, is the in-memory state Run follows (and keeps current), so
	// that others (stats) can read it; Run makes its own when nil.
	Mirror *store.Mirror
	// TCPEngine is how tcp configs are served: TCPEngineEpoll (the default on Linux)
	// or TCPEngineGoroutine (serve's --tcp-engine).
	TCPEngine string
	// TCPOwnWait, when positive, has each loop of the tcp engine wait for up to that
	// long in its own epoll set, keeping its P, before it parks in Go's poller
	// (l4engine_linux.go, loop.serve); serve's --tcp-own-wait. Zero parks at once.
	TCPOwnWait time.Duration
	// TCPBusyPoll, when positive, has each loop of the tcp engine that ran out of
	// events look at its own epoll set again without sleeping for up to that long,
	// before the own wait; serve's --tcp-busy-poll.
	TCPBusyPoll time.Duration
	// FreeBind binds frontend addresses this host does not hold (yet): with
	// --frontend-interface the host holding them is chosen at run time (package ha).
	// Off, a frontend address that is not local fails to listen, as it should on a
	// single host.
	FreeBind bool
	// NoHTTPPark keeps a goroutine on every idle plain-http keep-alive connection
	// instead of parking it in an epoll set (httpproxy.Server.SetParking), and
	// accepts plain http clients through Go's net package instead of raw
	// (accept_linux.go).
	NoHTTPPark bool
}

// Plane is the running data plane.
type Plane struct {
	opts   Options
	log    *slog.Logger
	dialer net.Dialer
	start  time.Time
	active atomic.Int64 // client connections across every listener
	busy   atomic.Int64 // refused http(s) clients being answered 503 (answerBusy)

	// follow is what Run follows the store with; its mutex orders Run's turns
	// and CatchUp's, which both read the feed and converge.
	follow follower

	mu        sync.Mutex // reconcile state; never taken per connection
	listeners map[int]*listener
	// backends are each config's node runtimes, by config id then node id: a
	// rebuild reuses those whose node keeps its address and health handle, and
	// closes the others. round marks the backends the current rebuild keeps.
	backends  map[int]map[int]*backend
	round     uint64
	limiters  map[int]*limiterEntry
	sticky    map[int]*balance.StickyTable
	failed    map[int]*failure         // configs whose listener could not be opened
	guards    map[int]*firewall.Guard  // by NodeBalancer, for as long as it exists
	fwTables  map[int]compiledFirewall // by firewall id
	closing   sync.WaitGroup
	ready     atomic.Bool
	accessLog accessLogger
	udp       udpState // udp configs (udp.go)
	// engine serves tcp configs (l4engine.go), started with the first; engineFailed
	// when it could not start (the goroutine path serves them).
	engine       *engine
	engineFailed bool

	// reused and rebuilt count the pools built from the previous snapshot
	// (reuseNodes) and from scratch (buildNodes), for tests. Guarded by mu.
	reused, rebuilt int
}

type limiterEntry struct {
	perSecond int
	l         *throttle.Limiter
}

// New returns a Plane with no listeners; Run (or Apply) gives it some.
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
		backends:  map[int]map[int]*backend{},
		limiters:  map[int]*limiterEntry{},
		sticky:    map[int]*balance.StickyTable{},
		failed:    map[int]*failure{},
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

// follower is the state of following the store: who may read the feed and the
// mirror, and how far they have got.
type follower struct {
	mu      sync.Mutex
	db      *store.DB     // nil until Run has loaded the state, and again once it ends
	m       *store.Mirror // the mirror Run keeps current
	applied uint64        // the revision the data plane serves
	stale   bool          // a change could not be read: the mirror lags until a full read
}

// Run follows the store until ctx ends, then closes every listener within the grace
// period. It loads the whole state once; after that each change costs what it
// changed: the mirror reads only the keys the change names, and only the configs
// they touch are rebuilt. Stage (on a store that offers it) or CatchUp may apply a
// change first, in the goroutine that writes it; Run then finds it applied.
func (p *Plane) Run(ctx context.Context, db *store.DB) error {
	m := p.opts.Mirror
	if m == nil {
		m = store.NewMirror(db)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	if b, ok := db.Backend().(interface{ SetStage(store.StageFunc) }); ok {
		b.SetStage(p.Stage) // the embedded store: a write is served before its fdatasync
		defer b.SetStage(nil)
	}
	var w <-chan store.Change
	for {
		p.follow.mu.Lock()
		d, err := m.Load()
		if err == nil {
			p.Apply(m, d)
			w = db.Watch(ctx, d.Revision)
			p.follow.db, p.follow.m, p.follow.applied = db, m, d.Revision
			p.follow.mu.Unlock()
			break
		}
		p.follow.mu.Unlock()
		p.log.Error("read desired state", "err", err)
		select {
		case <-ctx.Done():
			p.Close()
			return nil
		case <-tick.C:
		}
	}
	p.ready.Store(true)
	for {
		select {
		case <-ctx.Done():
			p.follow.mu.Lock()
			p.follow.db = nil // no CatchUp may open a listener once Close has run
			p.follow.mu.Unlock()
			p.Close()
			return nil
		case c, ok := <-w:
			if !ok {
				w = nil // ctx ended: the next turn returns
				continue
			}
			p.follow.mu.Lock()
			p.applyChange(c)
			p.follow.mu.Unlock()
		case <-tick.C:
			p.follow.mu.Lock()
			if p.follow.stale { // retry the full read that failed
				if d, err := m.Load(); err == nil {
					p.follow.stale = false
					p.follow.applied = d.Revision
					p.Apply(m, d)
				}
			}
			p.follow.mu.Unlock()
			p.maintain(m)
		}
	}
}

// applyChange brings the mirror and the listeners to Change c, unless they are
// there already (CatchUp applied it). p.follow.mu is held.
func (p *Plane) applyChange(c store.Change) {
	f := &p.follow
	if f.stale {
		c.Reset = true
	}
	if !c.Reset && c.Revision <= f.applied {
		return
	}
	d, err := f.m.Apply(c)
	if err != nil && !c.Reset {
		p.log.Error("read changed state", "revision", c.Revision, "err", err)
		d, err = f.m.Load() // the change is lost to the mirror: read everything
	}
	if f.stale = err != nil; f.stale {
		p.log.Error("read desired state", "err", err)
		return
	}
	f.applied = max(f.applied, d.Revision)
	p.Apply(f.m, d)
}

// CatchUp applies at once, in the caller's goroutine, whatever the store's feed
// holds beyond what the data plane serves. The API calls it after a write
// committed and before it answers: the new state is then served by the time the
// client hears that it is stored (on one host with the embedded store; with etcd
// the feed may not have the write yet, and Run applies it when it arrives). Run's
// watcher would apply the same change, but only once the runtime schedules two
// goroutines, which on a busy or single-P process comes after the API has
// written its answer. Before Run has loaded the state, after it ended, or while
// the mirror waits for a full read, it does nothing.
func (p *Plane) CatchUp() {
	f := &p.follow
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil || f.stale {
		return
	}
	if c, ok := f.db.Since(f.applied); ok {
		p.applyChange(c)
	}
}

// Stage applies a write of state before it commits, in the writing goroutine (a
// store.StageFunc, which Run sets on a store that offers it: the embedded one). A
// node drained through the API stops taking new clients as soon as the write is
// checked, not after bbolt's two fdatasyncs; the API still answers once the write
// is durable (and CatchUp then finds it applied). If the commit fails, the
// returned function reads the committed state again and serves it. Writes of
// firewalls are left to the feed: arming a guard reads the store, which does not
// hold them yet.
func (p *Plane) Stage(tx store.Tx, c store.Change) func(committed bool) {
	f := &p.follow
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil || f.stale || c.Reset || c.Revision <= f.applied {
		return nil
	}
	// The mirror may be behind the store (a writer's CatchUp not yet run): what it
	// lacks is read through tx too.
	if before, ok := f.db.Since(f.applied); ok {
		if before.Reset {
			return nil
		}
		c.Keys = append(before.Keys, c.Keys...)
	}
	for _, r := range c.Keys {
		if r.Kind == store.KindFirewall || r.Kind == store.KindFwDevice {
			return nil
		}
	}
	d, err := f.m.ApplyTx(tx, c)
	if err != nil {
		return nil // the feed brings it once committed
	}
	f.applied = c.Revision
	p.Apply(f.m, d)
	return func(committed bool) {
		if committed {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		p.log.Error("a change applied before its commit did not commit: reading the stored state again", "revision", c.Revision)
		f.stale = true
		if f.db == nil {
			return
		}
		d, err := f.m.Load()
		if err != nil {
			p.log.Error("read desired state", "err", err) // Run retries each second
			return
		}
		f.stale, f.applied = false, d.Revision
		p.Apply(f.m, d)
	}
}

// maintain runs once a second: it refreshes pick tables (a status change that raced a
// snapshot swap is picked up here), sweeps expired sticky pins, and retries listeners
// that could not be opened once their backoff has passed.
func (p *Plane) maintain(m *store.Mirror) {
	wall := time.Now()
	p.mu.Lock()
	var failed []int
	for id, f := range p.failed {
		if !wall.Before(f.next) {
			failed = append(failed, id)
		}
	}
	snaps := make([]*snapshot, 0, len(p.listeners))
	for _, l := range p.listeners {
		snaps = append(snaps, l.snap.Load())
	}
	udp := p.udpSnapshots()
	p.mu.Unlock()
	now := p.now()
	maintainUDP(udp, now)
	for _, s := range snaps {
		s.pool.Refresh()
		if s.sticky != nil {
			s.sticky.Sweep(now)
		}
	}
	if len(failed) > 0 {
		p.Apply(m, store.Delta{Configs: failed})
	}
}

// Close closes every listener, letting connections finish within the grace period.
func (p *Plane) Close() {
	p.mu.Lock()
	for id, l := range p.listeners {
		p.retire(l)
		delete(p.listeners, id)
	}
	p.closeUDP()
	p.mu.Unlock()
	p.closing.Wait()
	p.stopEngine()
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

// Apply converges the listeners, pools and node state of the configs d names to what
// m holds for them; the other configs are not looked at. It costs O(nodes of the
// configs in d).
func (p *Plane) Apply(m *store.Mirror, d store.Delta) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Guards first: a listener opened below for a NodeBalancer created with a
	// firewall must not take a client before its guard is armed.
	if d.Firewalls {
		if fws, err := m.FirewallsByNodeBalancer(); err != nil {
			p.log.Error("read firewalls", "err", err)
		} else {
			p.armFirewalls(fws, m.NodeBalancerIDs())
		}
	}
	for _, id := range d.NodeBalancers {
		if _, ok := m.NodeBalancer(id); !ok {
			delete(p.limiters, id)
			p.forgetUDPLimiter(id)
			delete(p.guards, id)
			p.opts.Stats.ForgetNodeBalancer(id)
		}
	}
	for _, id := range d.Configs {
		cs, ok := m.Config(id)
		if !ok {
			p.remove(id)
			continue
		}
		p.converge(cs)
	}
}

// Reconcile converges the data plane to st in full: every config of st is served,
// every other one removed. Run follows the store change by change instead;
// Reconcile is for callers without a store (tests and benchmarks).
func (p *Plane) Reconcile(st store.State) {
	d := store.Delta{Revision: st.Revision, Firewalls: true}
	want := map[int]bool{}
	for _, nb := range st.NodeBalancers {
		d.NodeBalancers = append(d.NodeBalancers, nb.ID)
		for _, c := range nb.Configs {
			want[c.ID] = true
			d.Configs = append(d.Configs, c.ID)
		}
	}
	p.mu.Lock()
	for _, ids := range []map[int]bool{keys(p.listeners), keys(p.failed), keys(p.backends), keys(p.udp.configs)} {
		for id := range ids {
			if !want[id] {
				want[id] = true
				d.Configs = append(d.Configs, id)
			}
		}
	}
	for id := range p.limiters {
		d.NodeBalancers = append(d.NodeBalancers, id)
	}
	for id := range p.udp.limiters {
		d.NodeBalancers = append(d.NodeBalancers, id)
	}
	p.mu.Unlock()
	p.Apply(store.MirrorOf(st), d)
}

// keys returns the keys of m as a set.
func keys[V any](m map[int]V) map[int]bool {
	out := make(map[int]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// converge makes config cs served as the state says. p.mu is held.
func (p *Plane) converge(cs *store.ConfigState) {
	nb, c := cs.NodeBalancer, cs.Config
	ips := frontendIPs(*nb)
	if len(ips) == 0 {
		p.log.Error("nodebalancer has no usable ipv4", "nodebalancer_id", nb.ID, "ipv4", nb.IPv4)
		p.remove(c.ID)
		return
	}
	if c.Protocol == model.ProtocolUDP {
		p.convergeUDP(cs, ips)
		return
	}
	p.removeUDP(c.ID) // the config was udp until now
	limiter := p.limiter(nb.ID, nb.ClientConnThrottle)
	addrs := listenAddrs(ips, c.Port)
	if l := p.listeners[c.ID]; l != nil && l.serves(cs, limiter, addrs) {
		// Unchanged (a NodeBalancer label, say): building pick tables again would
		// cost time for nothing.
		return
	}
	p.round++
	s, replaced, err := p.snapshot(*nb, cs, limiter)
	if err != nil {
		// The old snapshot, if any, serves on with its backends: put back those
		// the failed build replaced (the ones it made have no connections yet).
		for _, b := range replaced {
			p.backends[c.ID][b.id] = b
		}
		p.fail(nb.ID, c.ID, addrs[0], fmt.Errorf("config cannot be served: %w", err))
		return
	}
	for _, b := range replaced {
		b.close()
	}
	p.dropBackends(c.ID, p.round)
	p.place(nb.ID, c.ID, addrs, c.Protocol, s)
}

// dropBackends closes and forgets the backends of config id that the rebuild of
// round did not keep (every one when round is 0). p.mu is held.
func (p *Plane) dropBackends(id int, round uint64) {
	cur := p.backends[id]
	for nodeID, b := range cur {
		if round != 0 && b.round == round {
			continue
		}
		b.close()
		delete(cur, nodeID)
		p.opts.Stats.ForgetNode(nodeID)
	}
	if len(cur) == 0 {
		delete(p.backends, id)
	}
}

// remove stops serving config id: its listener drains, its nodes stop being checked,
// its counters are forgotten. p.mu is held.
func (p *Plane) remove(id int) {
	if l := p.listeners[id]; l != nil {
		p.retire(l)
		delete(p.listeners, id)
		p.log.Info("listener closed", "config_id", id, "addr", l.addr.String())
	}
	p.removeUDP(id)
	p.opts.Health.Remove(id)
	delete(p.failed, id)
	delete(p.sticky, id)
	p.dropBackends(id, 0)
	p.opts.Stats.ForgetConfig(id)
}

// place makes sure config id of NodeBalancer nbID listens on addrs (its ipv4 and
// ipv6 at the config's port) with protocol and serves s. p.mu is held.
func (p *Plane) place(nbID, id int, addrs []netip.AddrPort, proto model.Protocol, s *snapshot) {
	l := p.listeners[id]
	if l != nil && (!slices.Equal(l.want, addrs) || l.protocol != proto) {
		p.retire(l)
		delete(p.listeners, id)
		p.log.Info("listener moving", "config_id", id, "from", fmt.Sprint(l.addrs), "to", fmt.Sprint(addrs), "protocol", string(proto))
		l = nil
	}
	if l == nil {
		lns, bound, skipped, err := listenAll(addrs, p.opts.FreeBind)
		if skipped != nil {
			// Not retried until the config or its NodeBalancer changes: the IPv6 pool
			// needs the host set up for it (docs/design.md, IPv6).
			p.log.Error("cannot listen on every address; serving the others", "config_id", id, "err", skipped)
		}
		if err != nil {
			p.fail(nbID, id, addrs[0], err)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		l = &listener{plane: p, configID: id, addr: bound[0], want: addrs, addrs: bound, protocol: proto, lns: lns, ctx: ctx, cancel: cancel}
		l.setSnapshot(s)
		l.start()
		p.listeners[id] = l
		if f := p.failed[id]; f != nil {
			p.log.Info("listener open after failing", "nodebalancer_id", nbID, "config_id", id, "addr", fmt.Sprint(bound),
				"protocol", string(proto), "failed_for", time.Since(f.since).Round(time.Millisecond), "attempts", f.attempts)
		} else {
			p.log.Info("listener open", "nodebalancer_id", nbID, "config_id", id, "addr", fmt.Sprint(bound), "protocol", string(proto))
		}
	}
	l.setSnapshot(s)
	// Serving s ends any failure: a bind that failed, or an earlier snapshot of this
	// config that could not be built while the listener kept the one before.
	delete(p.failed, id)
}

// failure is why a config that should listen does not, and when to try again.
type failure struct {
	nbID     int
	addr     netip.AddrPort
	err      error
	since    time.Time // first failure of this streak
	attempts int
	next     time.Time // the once-a-second maintenance retries from then on
}

// Bind retries back off from RetryMin, doubling up to RetryMax: a port held by
// another process is usually freed within seconds, and a bind attempt costs one
// snapshot build of the failed config.
const (
	RetryMin = 2 * time.Second
	RetryMax = 5 * time.Second
)

// fail records that config id of NodeBalancer nbID could not listen on addr. The
// first failure of a streak (or one on a new address) is logged at Error, retries
// at Debug. p.mu is held.
func (p *Plane) fail(nbID, id int, addr netip.AddrPort, err error) {
	now := time.Now()
	f := p.failed[id]
	if f == nil || f.addr != addr {
		f = &failure{nbID: nbID, addr: addr, since: now}
		p.failed[id] = f
		p.log.Error("cannot listen", "nodebalancer_id", nbID, "config_id", id, "addr", addr.String(), "err", err,
			"retry_in", RetryMin)
	} else {
		p.log.Debug("cannot listen yet", "nodebalancer_id", nbID, "config_id", id, "addr", addr.String(), "err", err,
			"attempts", f.attempts+1)
	}
	f.err = err
	f.attempts++
	f.next = now.Add(min(RetryMin<<min(f.attempts-1, 8), RetryMax))
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
	p.udpListening(out)
	return out
}

// FailedListener is a config that should listen and does not.
type FailedListener struct {
	NodeBalancerID, ConfigID int
	Addr                     netip.AddrPort
	Err                      error
	// Since is when it first failed; Attempts counts tries since, the first included.
	Since    time.Time
	Attempts int
}

// Failed returns the configs that should listen and do not, in config id order.
func (p *Plane) Failed() []FailedListener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]FailedListener, 0, len(p.failed))
	for id, f := range p.failed {
		out = append(out, FailedListener{NodeBalancerID: f.nbID, ConfigID: id, Addr: f.addr, Err: f.err, Since: f.since, Attempts: f.attempts})
	}
	slices.SortFunc(out, func(a, b FailedListener) int { return a.ConfigID - b.ConfigID })
	return out
}

// ListenerStatus tells whether config id listens on this host: open, failed (and
// why), or pending when the data plane has not applied it yet.
func (p *Plane) ListenerStatus(id int) model.ListenerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.failed[id]; f != nil {
		return model.ListenerStatus{State: model.ListenerFailed, Address: f.addr.String(), Error: f.err.Error(),
			Since: f.since, Attempts: f.attempts}
	}
	if l := p.listeners[id]; l != nil {
		return model.ListenerStatus{State: model.ListenerOpen, Address: l.addr.String()}
	}
	if u := p.udp.configs[id]; u != nil {
		return model.ListenerStatus{State: model.ListenerOpen, Address: u.proxy.Addr().String()}
	}
	return model.ListenerStatus{State: model.ListenerPending}
}

// StatusChanged follows a health status change of config id's nodes: it rebuilds the
// pick tables and drops the sticky pins of nodes that went DOWN. The health
// checker's OnChange calls it.
func (p *Plane) StatusChanged(id int) {
	if p.udpStatusChanged(id) {
		return
	}
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
