package dataplane

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
)

// The data plane follows the store's firewalls: it arms each NodeBalancer's guard
// with its enabled firewall's table (one table per rules version, shared by the
// NodeBalancers it guards), re-arms on a rules change, disarms on disable or detach,
// and forgets the guard of a deleted NodeBalancer.
func TestPlaneArmsFirewallGuardsFromTheStore(t *testing.T) {
	b, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	db := store.New(b, store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix("127.96.0.0/24")}})
	p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, db) }()
	t.Cleanup(func() { cancel(); <-done; db.Close() })

	var ids []int
	for range 3 {
		nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, nb.ID)
	}
	rules := model.FirewallRules{InboundPolicy: model.ActionAccept, OutboundPolicy: model.ActionAccept,
		Inbound: []model.FirewallRule{{Label: "deny", Action: model.ActionDrop, Protocol: model.RuleTCP,
			Addresses: model.FirewallAddresses{IPv4: []string{"127.95.0.0/16"}}}}}
	fw, err := db.CreateFirewall(model.Firewall{Label: "guard", Status: model.FirewallEnabled, Rules: rules}, ids[:2])
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("127.95.0.1")
	within := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	armed := func(id int) *firewall.Table { return p.FirewallGuard(id).Armed() }
	within("the guards armed", func() bool { return armed(ids[0]) != nil && armed(ids[1]) != nil })
	if armed(ids[0]) != armed(ids[1]) {
		t.Fatal("NodeBalancers guarded by one firewall do not share its compiled table")
	}
	if armed(ids[2]) != nil {
		t.Fatal("a NodeBalancer without a firewall is armed")
	}
	if ok, rule := p.FirewallGuard(ids[0]).Allow(client, firewall.TCP, 80); ok || rule != "deny" {
		t.Fatalf("Allow = %v %q", ok, rule)
	}
	first := armed(ids[0])
	rules.Inbound = nil
	if _, err := db.UpdateFirewallRules(fw.ID, rules); err != nil {
		t.Fatal(err)
	}
	within("the new rules", func() bool { return armed(ids[0]) != first && armed(ids[0]) != nil })
	if ok, _ := p.FirewallGuard(ids[1]).Allow(client, firewall.TCP, 80); !ok {
		t.Fatal("the new rules were not applied")
	}
	if _, err := db.UpdateFirewall(fw.ID, func(f *model.Firewall) error { f.Status = model.FirewallDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	within("a disabled firewall to filter nothing", func() bool { return armed(ids[0]) == nil && armed(ids[1]) == nil })
	if _, err := db.UpdateFirewall(fw.ID, func(f *model.Firewall) error { f.Status = model.FirewallEnabled; return nil }); err != nil {
		t.Fatal(err)
	}
	within("enabled again", func() bool { return armed(ids[0]) != nil })
	devs, err := db.FirewallDevices(fw.ID)
	if err != nil || len(devs) != 2 {
		t.Fatalf("devices %v %v", devs, err)
	}
	if err := db.DeleteFirewallDevice(fw.ID, devs[0].ID); err != nil {
		t.Fatal(err)
	}
	within("the detached NodeBalancer disarmed", func() bool { return armed(devs[0].EntityID) == nil })
	if err := db.DeleteNodeBalancer(ids[1]); err != nil {
		t.Fatal(err)
	}
	within("the deleted NodeBalancer's guard forgotten", func() bool { return p.FirewallGuard(ids[1]) == nil })
}
