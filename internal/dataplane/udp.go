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
	cfg     model.Config
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

// reconcileUDP converges udp config c of nb, listening on ip. p.mu is held.
func (p *Plane) reconcileUDP(nb model.NodeBalancer, ip netip.Addr, c model.ConfigWithNodes, wantBackend map[backendKey]bool) {
	if p.udp.configs == nil {
		p.udp.configs = map[int]*udpConfig{}
		p.udp.limiters = map[int]*limiterEntry{}
	}
	if l := p.listeners[c.ID]; l != nil { // the config was tcp or http until now
		p.retire(l)
		delete(p.listeners, c.ID)
	}
	addr := netip.AddrPortFrom(ip, uint16(c.Port))
	limiter := p.udpLimiter(nb.ID, nb.ClientUDPSessThrottle)
	u := p.udp.configs[c.ID]
	if u != nil && u.proxy.Addr() == addr && u.limiter == limiter && u.cfg == c.Config && slices.Equal(u.nodes, c.Nodes) {
		for _, n := range c.Nodes {
			if a, err := netip.ParseAddrPort(n.Address); err == nil {
				wantBackend[backendKey{n.ID, netip.AddrPortFrom(a.Addr().Unmap(), a.Port())}] = true
			}
		}
		return
	}
	if u != nil && u.proxy.Addr() != addr {
		u.proxy.Close()
		delete(p.udp.configs, c.ID)
		u = nil
	}
	if u == nil {
		u = &udpConfig{}
	}
	s, err := p.udpSnapshot(nb, c, u, limiter, wantBackend)
	if err != nil {
		p.log.Error("config cannot be served", "nodebalancer_id", nb.ID, "config_id", c.ID, "err", err)
		p.failed[c.ID] = err
		return
	}
	if u.proxy == nil {
		u.proxy, err = udpproxy.Listen(addr, s, udpproxy.Options{
			Log: p.log, Source: p.opts.BackendSource, Now: p.now,
			Active: &p.active, MaxSessions: int64(p.opts.MaxConns), AccessLog: p.opts.UDPAccessLog,
		})
		if err != nil {
			if _, seen := p.failed[c.ID]; !seen {
				p.log.Error("cannot listen", "config_id", c.ID, "addr", addr.String(), "protocol", "udp", "err", err)
			}
			p.failed[c.ID] = err
			return
		}
		p.udp.configs[c.ID] = u
		p.log.Info("listener open", "config_id", c.ID, "addr", addr.String(), "protocol", "udp")
	} else {
		u.proxy.SetSnapshot(s)
	}
	u.cfg, u.nodes, u.limiter = c.Config, c.Nodes, limiter
	delete(p.failed, c.ID)
}

// udpSnapshot builds the snapshot of udp config c. Active checks reach each node at
// its address with the port replaced by udp_check_port (over TCP). p.mu is held.
func (p *Plane) udpSnapshot(nb model.NodeBalancer, c model.ConfigWithNodes, u *udpConfig, limiter *throttle.Limiter, seen map[backendKey]bool) (*udpproxy.Snapshot, error) {
	algo, err := balance.ParseAlgorithm(string(c.Algorithm))
	if err != nil {
		return nil, err
	}
	checked := make([]model.Node, len(c.Nodes))
	addrs := make([]netip.AddrPort, len(c.Nodes))
	for i, n := range c.Nodes {
		a, err := netip.ParseAddrPort(n.Address)
		if err != nil {
			return nil, fmt.Errorf("node %d address %q: %w", n.ID, n.Address, err)
		}
		addrs[i] = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		checked[i] = n
		checked[i].Address = netip.AddrPortFrom(a.Addr(), uint16(c.UDPCheckPort)).String()
	}
	handles := p.opts.Health.Set(c.ID, health.SpecOf(&c.Config), checked)
	nodes := make([]balance.Node, 0, len(c.Nodes))
	for i, n := range c.Nodes {
		mode, err := balance.ParseMode(string(n.Mode))
		if err != nil {
			return nil, err
		}
		k := backendKey{n.ID, addrs[i]}
		b := p.backends[k]
		if b != nil && b.health != handles[i] {
			b.close()
			b = nil
		}
		if b == nil {
			b = &backend{id: n.ID, addr: addrs[i], health: handles[i], stats: p.opts.Stats.Node(n.ID), now: p.now}
			p.backends[k] = b
		}
		seen[k] = true
		nodes = append(nodes, balance.Node{ID: n.ID, Weight: n.Weight, Mode: mode, State: b.health.State(), Addr: addrs[i], Data: b})
	}
	pool, err := balance.NewPool(algo, nodes)
	if err != nil {
		return nil, err
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
		NodeBalancerID: nb.ID, ConfigID: c.ID, Pool: pool, Stickiness: kind, Sticky: u.sticky, Limiter: limiter,
		NB: p.opts.Stats.NodeBalancer(nb.ID), Config: p.opts.Stats.Config(c.ID), Timeout: p.udpTimeout(),
	}, nil
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

// retainUDP closes the udp proxies of configs that are gone or no longer udp. p.mu
// is held.
func (p *Plane) retainUDP(st store.State) {
	if len(p.udp.configs) == 0 && len(p.udp.limiters) == 0 {
		return
	}
	want := map[int]bool{}
	wantNB := map[int]bool{}
	for _, nb := range st.NodeBalancers {
		wantNB[nb.ID] = true
		for _, c := range nb.Configs {
			if c.Protocol == model.ProtocolUDP {
				want[c.ID] = true
			}
		}
	}
	for id, u := range p.udp.configs {
		if !want[id] {
			if _, other := p.listeners[id]; !other {
				p.opts.Health.Remove(id)
			}
			u.proxy.Close()
			delete(p.udp.configs, id)
			p.log.Info("listener closed", "config_id", id, "addr", u.proxy.Addr().String(), "protocol", "udp")
		}
	}
	for id := range p.udp.limiters {
		if !wantNB[id] {
			delete(p.udp.limiters, id)
		}
	}
}

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
		u.proxy.Close()
		delete(p.udp.configs, id)
	}
}

// UDPSessions returns the open sessions of udp config id, for tests and diagnostics.
func (p *Plane) UDPSessions(id int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.udp.configs[id]; u != nil {
		return u.proxy.Sessions()
	}
	return 0
}

// udpListening adds the udp configs' addresses to m. p.mu is held.
func (p *Plane) udpListening(m map[int]netip.AddrPort) {
	for id, u := range p.udp.configs {
		m[id] = u.proxy.Addr()
	}
}
