package dataplane

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/httpproxy"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/throttle"
)

// snapshot is everything a listener needs to serve one connection, built once per
// change and never modified: connections keep the snapshot they were accepted with.
type snapshot struct {
	nbID    int
	cfg     model.Config
	pool    *balance.Pool
	sticky  *balance.StickyTable // table stickiness only
	limiter *throttle.Limiter    // nil when client_conn_throttle is 0
	guard   *firewall.Guard      // the NodeBalancer's firewall check; stable across snapshots
	tls     *tls.Config          // https only
	tlsBusy *tls.Config          // https only: tls offering only HTTP/1.1, for answerBusy
	nb      *stats.Counters
	stats   *stats.Counters // the config's
	now     func() int64
	nodes   []model.Node // the config's nodes as stored, to tell whether they changed

	// ended settles a parked http connection accepted under this snapshot when it
	// closes (listener.ended); made once by setSnapshot, so that such a connection
	// holds no closure of its own.
	ended func()
}

// backend is the data plane's runtime for one node: its health handle (whose State is
// shared with the pool), counters, and the L7 connection pool. It lives as long as
// the node keeps its address, across snapshots.
type backend struct {
	id     int
	addr   netip.AddrPort
	health *health.Node // its State is the node's balance.State
	stats  *stats.Counters
	http   *httpproxy.Backend // http and https configs
	now    func() int64
	round  uint64 // the last rebuild of its config that kept it
}

// close drops the node's idle L7 connections when it leaves the configuration.
func (b *backend) close() {
	if b.http != nil {
		b.http.Close()
	}
}

// passiveFailure and passiveSuccess report real-traffic outcomes to the health
// checker's passive checks.
func (b *backend) passiveFailure() { b.health.Failure(b.now()) }
func (b *backend) passiveSuccess() { b.health.Success() }

// snapshot builds the snapshot of config c of nb. p.mu is held.
// It records the backends it uses in p.backends (marked with p.round) and returns
// those it replaced, for the caller to close once the snapshot is in.
func (p *Plane) snapshot(nb model.NodeBalancer, cs *store.ConfigState, limiter *throttle.Limiter) (*snapshot, []*backend, error) {
	c := model.ConfigWithNodes{Config: cs.Config, Nodes: cs.Nodes}
	algo, err := balance.ParseAlgorithm(string(c.Algorithm))
	if err != nil {
		return nil, nil, err
	}
	cur := p.backends[c.ID]
	if cur == nil {
		cur = make(map[int]*backend, len(c.Nodes))
		p.backends[c.ID] = cur
	}
	var prev *snapshot
	if l := p.listeners[c.ID]; l != nil {
		prev = l.snap.Load()
	}
	var replaced []*backend
	nodes, ok, err := p.reuseNodes(prev, c)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		p.reused++
	} else {
		p.rebuilt++
		if nodes, replaced, err = p.buildNodes(c, cur); err != nil {
			return nil, replaced, err
		}
	}
	var prevPool *balance.Pool
	if prev != nil {
		prevPool = prev.pool
	}
	popts := []balance.Option{balance.WithCookieKey(p.opts.CookieKey), balance.WithPrevious(prevPool), balance.Adopt()}
	if c.Stickiness != model.StickinessHTTPCookie {
		popts = append(popts, balance.WithoutCookies()) // only http_cookie asks for a node by token
	}
	pool, err := balance.NewPool(algo, nodes, popts...)
	if err != nil {
		return nil, replaced, err
	}
	s := &snapshot{
		nbID:    nb.ID,
		cfg:     c.Config,
		nodes:   c.Nodes,
		pool:    pool,
		limiter: limiter,
		guard:   p.guard(nb.ID),
		nb:      p.opts.Stats.NodeBalancer(nb.ID),
		stats:   p.opts.Stats.Config(c.ID),
		now:     p.now,
	}
	if c.Stickiness == model.StickinessTable {
		t := p.sticky[c.ID]
		if t == nil {
			t = balance.NewStickyTable(balance.StickyOptions{})
			p.sticky[c.ID] = t
		}
		s.sticky = t
		// Pins to nodes this config no longer has are dead weight.
		t.PurgeFunc(func(id int) bool { return pool.Lookup(id) == nil })
	} else {
		delete(p.sticky, c.ID)
	}
	if c.Protocol == model.ProtocolHTTPS {
		if s.tls, err = tlsConfig(c.Config); err != nil {
			return nil, replaced, err
		}
		s.tlsBusy = s.tls.Clone()
		s.tlsBusy.NextProtos = []string{"http/1.1"}
	}
	return s, replaced, nil
}

// buildNodes makes the pool's nodes of config c, with a backend for each: those in
// cur that keep their address and health handle are kept, the others are made anew
// (and returned as replaced, for the caller to close once the snapshot is in).
// Every node is parsed and told to the health checker: a full rebuild. p.mu is held.
func (p *Plane) buildNodes(c model.ConfigWithNodes, cur map[int]*backend) ([]balance.Node, []*backend, error) {
	var replaced []*backend
	handles := p.opts.Health.Set(c.ID, health.SpecOf(&c.Config), c.Nodes)
	nodes := make([]balance.Node, 0, len(c.Nodes))
	for i, n := range c.Nodes {
		addr, err := netip.ParseAddrPort(n.Address)
		if err != nil {
			return nil, replaced, fmt.Errorf("node %d address %q: %w", n.ID, n.Address, err)
		}
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
		mode, err := balance.ParseMode(string(n.Mode))
		if err != nil {
			return nil, replaced, err
		}
		b := cur[n.ID]
		if b != nil && (b.addr != addr || b.health != handles[i]) {
			// A new address, or the checker made the node a new handle (and State):
			// make a new backend rather than write to one that connections in flight
			// are reading; the old one is closed once the new snapshot is in.
			replaced = append(replaced, b)
			b = nil
		}
		if b == nil {
			b = &backend{id: n.ID, addr: addr, health: handles[i],
				stats: p.opts.Stats.Node(n.ID), now: p.now}
			cur[n.ID] = b
		}
		b.round = p.round
		if c.Protocol != model.ProtocolTCP && b.http == nil {
			b.http = httpproxy.NewBackend(addr, httpproxy.BackendOptions{
				Cookie:      balance.CookieToken(p.opts.CookieKey, n.ID),
				Data:        b,
				DialTimeout: p.opts.Timeouts.Connect,
				LocalAddr:   p.opts.BackendSource,
			})
		}
		nodes = append(nodes, balance.Node{ID: n.ID, Weight: n.Weight, Mode: mode, State: b.health.State(), Addr: addr, Data: b})
	}
	return nodes, replaced, nil
}

// reuseNodes makes the pool's nodes of config c from prev, the snapshot it
// replaces, when c differs from prev only in the modes, weights or labels of some
// nodes: the same config settings, and the same node ids at the same addresses in
// the same order. That is what a node-mode or weight change is, and it then costs
// a comparison and a copy per node: no address is parsed, no map is read, and the
// health checker hears only of the nodes whose mode changed (Checker.SetModes).
// ok is false when c is not such a change (or the checker cannot take it that
// way): buildNodes does the full rebuild. Backends stay those of prev. p.mu is held.
func (p *Plane) reuseNodes(prev *snapshot, c model.ConfigWithNodes) (nodes []balance.Node, ok bool, err error) {
	// A build that failed since prev may have told the checker of other nodes:
	// only a full rebuild brings both back in step.
	if prev == nil || p.failed[c.ID] != nil || prev.cfg != c.Config || len(prev.nodes) != len(c.Nodes) ||
		prev.pool.Len() != len(c.Nodes) {
		return nil, false, nil
	}
	var changed, modes []int
	for i := range c.Nodes {
		o, n := &prev.nodes[i], &c.Nodes[i]
		if o.ID != n.ID || o.Address != n.Address {
			return nil, false, nil
		}
		if *o != *n {
			changed = append(changed, i)
			if o.Mode != n.Mode {
				modes = append(modes, i)
			}
		}
	}
	if len(modes) > 0 {
		ms := make([]model.Node, len(modes))
		for j, i := range modes {
			ms[j] = c.Nodes[i]
		}
		if !p.opts.Health.SetModes(c.ID, health.SpecOf(&c.Config), ms) {
			return nil, false, nil
		}
	}
	nodes = make([]balance.Node, len(c.Nodes))
	for i := range nodes {
		nodes[i] = *prev.pool.Node(i)
		nodes[i].Data.(*backend).round = p.round
	}
	for _, i := range changed {
		mode, err := balance.ParseMode(string(c.Nodes[i].Mode))
		if err != nil {
			return nil, true, err
		}
		nodes[i].Weight, nodes[i].Mode = c.Nodes[i].Weight, mode
	}
	return nodes, true, nil
}

// serves reports whether l already serves config cs with limiter on addrs, so that
// the snapshot need not be built again.
func (l *listener) serves(cs *store.ConfigState, limiter *throttle.Limiter, addrs []netip.AddrPort) bool {
	s := l.snap.Load()
	return slices.Equal(l.want, addrs) && s.limiter == limiter && s.cfg == cs.Config && slices.Equal(s.nodes, cs.Nodes)
}

// choose picks the node for a new client connection (tcp) or request (http without a
// cookie), honouring table stickiness; tried is a node whose connect just failed.
func (s *snapshot) choose(client netip.Addr, key uint64, tried *balance.Node) *balance.Node {
	if tried != nil {
		n := s.pool.PickExcluding(key, tried)
		if n != nil && s.sticky != nil {
			s.sticky.Set(client, n.ID, s.now())
		}
		return n
	}
	pinned := 0
	if s.sticky != nil {
		if id, ok := s.sticky.Get(client, s.now()); ok {
			pinned = id
		}
	}
	n, repin := s.pool.Choose(key, pinned)
	if repin && s.sticky != nil && n != nil {
		s.sticky.Set(client, n.ID, s.now())
	}
	return n
}

// refuse closes a client the snapshot will not serve. reset sends an RST at once, for
// clients over the connection cap or throttle; otherwise the client sees an orderly
// close (no node could take it).
func (s *snapshot) refuse(c *net.TCPConn, reset bool) {
	s.stats.Refused.Add(1)
	s.nb.Refused.Add(1)
	if reset {
		c.SetLinger(0)
	}
	c.Close()
}
