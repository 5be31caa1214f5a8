package dataplane

import (
	"net"
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Cloud Firewalls in the data plane. Each NodeBalancer has one firewall.Guard for as
// long as it exists, held by every snapshot of its configs; Apply arms it with
// the compiled table of the firewall attached (nil when none is, or it is disabled).
// A rule change therefore reaches new clients as soon as Apply runs, without
// rebuilding any snapshot, and established connections are left alone — as a
// stateful firewall leaves established flows alone.

// compiledFirewall is a firewall's table with what it was compiled from, so that a
// reconcile that changed nothing about the firewall reuses it.
type compiledFirewall struct {
	version     int
	fingerprint string
	t           *firewall.Table
}

// guard returns the Guard of NodeBalancer id, made on first use. p.mu is held.
func (p *Plane) guard(id int) *firewall.Guard {
	g := p.guards[id]
	if g == nil {
		g = firewall.NewGuard(id, p.opts.FirewallDrops)
		p.guards[id] = g
	}
	return g
}

// firewallTable returns the table fw's inbound rules compile to, nil when fw is nil
// or disabled (a disabled firewall filters nothing). p.mu is held.
func (p *Plane) firewallTable(fw *model.Firewall) *firewall.Table {
	if fw == nil || fw.Status != model.FirewallEnabled {
		return nil
	}
	if c, ok := p.fwTables[fw.ID]; ok && c.version == fw.Rules.Version && c.fingerprint == fw.Rules.Fingerprint {
		return c.t
	}
	t, err := firewall.Compile(fw.Rules)
	if err != nil {
		// The API validates every rule; a store edited behind its back must not open
		// the door either: such a firewall drops everything until fixed.
		p.log.Error("firewall rules cannot be compiled; dropping every client of its NodeBalancers", "firewall_id", fw.ID, "err", err)
		t, _ = firewall.Compile(model.FirewallRules{InboundPolicy: model.ActionDrop})
	}
	p.fwTables[fw.ID] = compiledFirewall{fw.Rules.Version, fw.Rules.Fingerprint, t}
	return t
}

// armFirewalls arms the guard of every NodeBalancer of live with the table of its
// firewall in byNB (store.DB.FirewallsByNodeBalancer), disarms the others, and
// forgets the guards, drop counters and tables of NodeBalancers and firewalls that
// are gone. p.mu is held.
func (p *Plane) armFirewalls(byNB map[int]*model.Firewall, live map[int]bool) {
	for id := range live {
		p.guard(id).Arm(p.firewallTable(byNB[id]))
	}
	for id := range p.guards {
		if !live[id] {
			delete(p.guards, id)
		}
	}
	p.opts.FirewallDrops.Retain(live)
	used := map[int]bool{}
	for id, fw := range byNB {
		if live[id] {
			used[fw.ID] = true
		}
	}
	for id := range p.fwTables {
		if !used[id] {
			delete(p.fwTables, id)
		}
	}
}

// firewall applies the NodeBalancer's firewall to a client just accepted, before
// anything else is done for it (the throttle, the connection cap, TLS, a node). A
// dropped client is reset without a byte sent: the kernel completed the handshake
// before the balancer saw the client, so a reset is the nearest to a silent drop.
func (l *listener) firewall(s *snapshot, c *net.TCPConn, local netip.AddrPort) bool {
	if s.guard.Armed() == nil {
		return true
	}
	src := remoteAddr(c)
	ok, rule := s.guard.Allow(src.Addr(), firewall.TCP, local.Port())
	if ok {
		return true
	}
	c.SetLinger(0)
	c.Close()
	if log := l.plane.opts.DropLog; log != nil {
		log(s.nbID, s.cfg.ID, src, local, rule)
	}
	return false
}

// FirewallGuard returns the firewall check of NodeBalancer id, nil when the plane
// does not serve it. The UDP path calls its Allow once per new session.
func (p *Plane) FirewallGuard(id int) *firewall.Guard {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.guards[id]
}
