package dataplane

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// Reconcile arms each NodeBalancer's guard with its enabled firewall's table,
// compiles a firewall once per rules version, and disarms on disable or detach.
func TestReconcileArmsFirewallGuards(t *testing.T) {
	p := New(Options{Log: slog.New(slog.DiscardHandler)})
	defer p.Close()
	fw := &model.Firewall{ID: 3, Status: model.FirewallEnabled, Rules: model.FirewallRules{
		InboundPolicy: model.ActionAccept, OutboundPolicy: model.ActionAccept, Version: 1, Fingerprint: "a",
		Inbound: []model.FirewallRule{{Label: "deny", Action: model.ActionDrop, Protocol: model.RuleTCP,
			Addresses: model.FirewallAddresses{IPv4: []string{"127.95.0.0/16"}}}}}}
	// No configs: no listener is opened, only the guards are reconciled.
	state := func(fws ...*model.Firewall) store.State {
		st := store.State{}
		for i, f := range fws {
			st.NodeBalancers = append(st.NodeBalancers, store.NodeBalancerState{
				NodeBalancer: model.NodeBalancer{ID: i + 1, IPv4: "127.96.0.1"}, Firewall: f})
		}
		return st
	}
	client := netip.MustParseAddr("127.95.0.1")
	p.Reconcile(state(fw, fw, nil))
	g1, g2, g3 := p.FirewallGuard(1), p.FirewallGuard(2), p.FirewallGuard(3)
	if g1 == nil || g2 == nil || g3 == nil {
		t.Fatal("every NodeBalancer has a guard")
	}
	if g1.Armed() == nil || g1.Armed() != g2.Armed() {
		t.Fatal("NodeBalancers guarded by one firewall share its compiled table")
	}
	if ok, rule := g1.Allow(client, firewall.TCP, 80); ok || rule != "deny" {
		t.Fatalf("Allow = %v %q", ok, rule)
	}
	if g3.Armed() != nil {
		t.Fatal("a NodeBalancer without a firewall is armed")
	}
	first := g1.Armed()
	p.Reconcile(state(fw, fw, nil))
	if g1.Armed() != first || p.FirewallGuard(1) != g1 {
		t.Fatal("an unchanged firewall was compiled again, or the guard replaced")
	}
	changed := *fw
	changed.Rules.Version, changed.Rules.Fingerprint = 2, "b"
	changed.Rules.Inbound = nil
	p.Reconcile(state(&changed, fw, nil))
	if ok, _ := g1.Allow(client, firewall.TCP, 80); !ok {
		t.Fatal("new rules were not applied")
	}
	disabled := changed
	disabled.Status = model.FirewallDisabled
	p.Reconcile(state(&disabled, nil))
	if g1.Armed() != nil || g2.Armed() != nil {
		t.Fatal("a disabled or detached firewall still filters")
	}
	if p.FirewallGuard(3) != nil {
		t.Fatal("the guard of a deleted NodeBalancer is kept")
	}
}
