package dataplane

// This file joins udp configs to the data plane: one udpproxy.Proxy per udp config,
// reconciled beside the tcp/http listeners. The per-datagram path is udpproxy's.

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/throttle"
	"github.com/nodebalancer/nodebalancer/internal/udpproxy"
)

// udpState is the data plane's udp side. p.mu guards it.
type udpState struct {
	configs  map[int]*udpConfig
	limiters map[int]*limiterEntry // client_udp_sess_throttle per NodeBalancer
}

// udpConfig is one running udp config.
type udpConfig struct {
	proxy   *udpproxy.Proxy
	v6      *udpproxy.Proxy // on the NodeBalancer's ipv6 when it has one and it binds; same snapshot
	addr6   netip.AddrPort  // the ipv6 address wanted, served or not
	cfg     model.Config    // as served, to tell whether a change touched it
	nodes   []model.Node
	limiter *throttle.Limiter
	sticky  *balance.StickyTable
	kind    udpproxy.Stickiness
}

// Counters, PassiveFailure and PassiveSuccess make a backend a udpproxy.Backend.
func (b *backend) Counters() *stats.Counters { return b.stats }

// PassiveFailure reports an ICMP port-unreachable on a session's node socket.
func (b *backend) PassiveFailure() { b.passiveFailure() }

// PassiveSuccess reports a reply from the node.
func (b *backend) PassiveSuccess() { b.passiveSuccess() }

// udpTimeout is the idle time after which a udp session ends.
func (p *Plane) udpTimeout() time.Duration {
	if p.opts.UDPSessionTimeout > 0 {
		return p.opts.UDPSessionTimeout
	}
	return model.UDPSessionTimeout * time.Second
}

// convergeUDP makes udp config cs served on ips (the NodeBalancer's ipv4, then its
// ipv6 when it has one) as the state says. p.mu is held.
func (p *Plane) convergeUDP(cs *store.ConfigState, ips []netip.Addr) {
	nb, c := cs.NodeBalancer, cs.Config
	if p.udp.configs == nil {
		p.udp.configs = map[int]*udpConfig{}
		p.udp.limiters = map[int]*limiterEntry{}
	}
	if l := p.listeners[c.ID]; l != nil { // the config was tcp or http until now
		p.retire(l)
		delete(p.listeners, c.ID)
		delete(p.sticky, c.ID)
	}
	addr := netip.AddrPortFrom(ips[0], uint16(c.Port))
	var addr6 netip.AddrPort
	if len(ips) > 1 {
		addr6 = netip.AddrPortFrom(ips[1], uint16(c.Port))
	}
	limiter := p.udpLimiter(nb.ID, nb.ClientUDPSessThrottle)
	u := p.udp.configs[c.ID]
	if u != nil && u.proxy.Addr() == addr && u.addr6 == addr6 && u.limiter == limiter && u.cfg == c && slices.Equal(u.nodes, cs.Nodes) {
		return // unchanged (a NodeBalancer label, say)
	}
	if u != nil && (u.proxy.Addr() != addr || u.addr6 != addr6) {
		p.removeUDP(c.ID)
		u = nil
	}
	if u == nil {
		u = &udpConfig{}
	}
	p.round++
	s, replaced, err := p.udpSnapshot(*nb, cs, u, limiter)
	if err != nil {
		for _, b := range replaced {
			p.backends[c.ID][b.id] = b
		}
		p.fail(nb.ID, c.ID, addr, err)
		return
	}
	for _, b := range replaced {
		b.close()
	}
	p.dropBackends(c.ID, p.round)
	if u.proxy == nil {
		opts := udpproxy.Options{
			Log: p.log, Source: p.opts.BackendSource, Now: p.now,
			Active: &p.active, MaxSessions: int64(p.opts.MaxConns), AccessLog: p.opts.UDPAccessLog,
		}
		u.proxy, err = udpproxy.Listen(addr, s, opts)
		if err != nil {
			p.fail(nb.ID, c.ID, addr, err)
			return
		}
		u.addr6 = addr6
		if addr6.IsValid() {
			// As for tcp: an ipv6 the host cannot bind is logged and the ipv4 serves.
			if u.v6, err = udpproxy.Listen(addr6, s, opts); err != nil {
				p.log.Error("cannot listen on every address; serving the others", "config_id", c.ID, "addr", addr6.String(), "protocol", "udp", "err", err)
			}
		}
		p.udp.configs[c.ID] = u
		p.log.Info("listener open", "nodebalancer_id", nb.ID, "config_id", c.ID, "addr", addr.String(), "addr6", addr6.String(), "protocol", "udp")
	} else {
		u.proxy.SetSnapshot(s)
		if u.v6 != nil {
			u.v6.SetSnapshot(s)
		}
	}
	u.cfg, u.nodes, u.limiter = c, cs.Nodes, limiter
	delete(p.failed, c.ID)
}

// udpSnapshot builds the snapshot of udp config cs. Active checks reach each node at
// its address with the port replaced by udp_check_port (over TCP). Like snapshot, it
// records the backends it uses in p.backends (marked with p.round) and returns those
// it replaced. p.mu is held.
func (p *Plane) udpSnapshot(nb model.NodeBalancer, cs *store.ConfigState, u *udpConfig, limiter *throttle.Limiter) (*udpproxy.Snapshot, []*backend, error) {
	c := cs.Config
	algo, err := balance.ParseAlgorithm(string(c.Algorithm))
	if err != nil {
		return nil, nil, err
	}
	checked := make([]model.Node, len(cs.Nodes))
	addrs := make([]netip.AddrPort, len(cs.Nodes))
	for i, n := range cs.Nodes {
		a, err := netip.ParseAddrPort(n.Address)
		if err != nil {
			return nil, nil, fmt.Errorf("node %d address %q: %w", n.ID, n.Address, err)
		}
		addrs[i] = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		checked[i] = n
		checked[i].Address = netip.AddrPortFrom(a.Addr(), uint16(c.UDPCheckPort)).String()
	}
	cur := p.backends[c.ID]
	if cur == nil {
		cur = make(map[int]*backend, len(cs.Nodes))
		p.backends[c.ID] = cur
	}
	var replaced []*backend
	handles := p.opts.Health.Set(c.ID, health.SpecOf(&c), checked)
	nodes := make([]balance.Node, 0, len(cs.Nodes))
	for i, n := range cs.Nodes {
		mode, err := balance.ParseMode(string(n.Mode))
		if err != nil {
			return nil, replaced, err
		}
		b := cur[n.ID]
		if b != nil && (b.addr != addrs[i] || b.health != handles[i] || b.http != nil) {
			replaced = append(replaced, b)
			b = nil
		}
		if b == nil {
			b = &backend{id: n.ID, addr: addrs[i], health: handles[i], stats: p.opts.Stats.Node(n.ID), now: p.now}
			cur[n.ID] = b
		}
		b.round = p.round
		nodes = append(nodes, balance.Node{ID: n.ID, Weight: n.Weight, Mode: mode, State: b.health.State(), Addr: addrs[i], Data: b})
	}
	pool, err := balance.NewPool(algo, nodes, balance.Adopt(), balance.WithoutCookies())
	if err != nil {
		return nil, replaced, err
	}
	kind := udpproxy.StickyNone
	switch c.Stickiness {
	case model.StickinessSession:
		kind = udpproxy.StickySession
	case model.StickinessSourceIP:
		kind = udpproxy.StickySourceIP
	}
	if kind == udpproxy.StickyNone {
		u.sticky = nil
	} else if u.sticky == nil || u.kind != kind {
		u.sticky = balance.NewStickyTable(balance.StickyOptions{})
	}
	u.kind = kind
	if u.sticky != nil {
		u.sticky.PurgeFunc(func(id int) bool { return pool.Lookup(id) == nil })
	}
	return &udpproxy.Snapshot{
		NodeBalancerID: nb.ID, ConfigID: c.ID, Pool: pool, Stickiness: kind, Sticky: u.sticky, Limiter: limiter, Firewall: p.guard(nb.ID),
		NB: p.opts.Stats.NodeBalancer(nb.ID), Config: p.opts.Stats.Config(c.ID), Timeout: p.udpTimeout(),
	}, replaced, nil
}

// udpLimiter returns the client_udp_sess_throttle limiter of NodeBalancer id, nil
// when it is off. p.mu is held.
func (p *Plane) udpLimiter(id, perSecond int) *throttle.Limiter {
	if perSecond <= 0 {
		delete(p.udp.limiters, id)
		return nil
	}
	if e := p.udp.limiters[id]; e != nil && e.perSecond == perSecond {
		return e.l
	}
	l, err := throttle.New(perSecond, throttle.Options{})
	if err != nil {
		p.log.Error("udp session throttle not applied", "nodebalancer_id", id, "err", err)
		return nil
	}
	p.udp.limiters[id] = &limiterEntry{perSecond, l}
	return l
}

// removeUDP stops serving udp config id, if it is one: its proxy closes and every
// session ends. Its backends and health handles are the caller's to drop. p.mu is
// held.
func (p *Plane) removeUDP(id int) {
	u := p.udp.configs[id]
	if u == nil {
		return
	}
	u.close()
	delete(p.udp.configs, id)
	p.log.Info("listener closed", "config_id", id, "addr", u.proxy.Addr().String(), "protocol", "udp")
}

// forgetUDPLimiter drops the client_udp_sess_throttle of a deleted NodeBalancer.
// p.mu is held.
func (p *Plane) forgetUDPLimiter(id int) { delete(p.udp.limiters, id) }

// udpSnapshots returns the current snapshot of every udp config. p.mu is held.
func (p *Plane) udpSnapshots() []*udpproxy.Snapshot {
	out := make([]*udpproxy.Snapshot, 0, len(p.udp.configs))
	for _, u := range p.udp.configs {
		out = append(out, u.proxy.Snapshot())
	}
	return out
}

// maintainUDP refreshes the pick tables of udp configs and sweeps their pins.
func maintainUDP(snaps []*udpproxy.Snapshot, now int64) {
	for _, s := range snaps {
		s.Pool.Refresh()
		if s.Sticky != nil {
			s.Sticky.Sweep(now)
		}
	}
}

// udpStatusChanged follows a status change of udp config id's nodes; it reports
// whether id is a udp config.
func (p *Plane) udpStatusChanged(id int) bool {
	p.mu.Lock()
	u := p.udp.configs[id]
	p.mu.Unlock()
	if u == nil {
		return false
	}
	s := u.proxy.Snapshot()
	s.Pool.Refresh()
	if s.Sticky != nil {
		s.Sticky.PurgeFunc(func(nodeID int) bool {
			n := s.Pool.Lookup(nodeID)
			return n == nil || n.State.Status() == balance.StatusDown
		})
	}
	return true
}

// closeUDP closes every udp proxy. p.mu is held.
func (p *Plane) closeUDP() {
	for id, u := range p.udp.configs {
		u.close()
		delete(p.udp.configs, id)
	}
}

// close closes the config's proxies; their sessions end.
func (u *udpConfig) close() {
	u.proxy.Close()
	if u.v6 != nil {
		u.v6.Close()
	}
}

// UDPSessions returns the open sessions of udp config id, for tests and diagnostics.
func (p *Plane) UDPSessions(id int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.udp.configs[id]; u != nil {
		n := u.proxy.Sessions()
		if u.v6 != nil {
			n += u.v6.Sessions()
		}
		return n
	}
	return 0
}

// udpListening adds the udp configs' addresses to m. p.mu is held.
func (p *Plane) udpListening(m map[int]netip.AddrPort) {
	for id, u := range p.udp.configs {
		m[id] = u.proxy.Addr()
	}
}
