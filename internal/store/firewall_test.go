package store_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
)

func firewall(label string) model.Firewall {
	return model.Firewall{Label: label, Status: model.FirewallEnabled, Tags: []string{},
		Rules: model.FirewallRules{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT"}}
}

func TestFirewallOnePerNodeBalancerAndCascades(t *testing.T) {
	bk, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	db := store.New(bk, store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24")}})
	t.Cleanup(func() { db.Close() })
	a, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fw1, err := db.CreateFirewall(firewall("fw-one"), []int{a.ID})
	if err != nil {
		t.Fatal(err)
	}
	if fw1.Rules.Version != 1 || len(fw1.Rules.Fingerprint) != 8 {
		t.Fatalf("rules version %d fingerprint %q", fw1.Rules.Version, fw1.Rules.Fingerprint)
	}
	if _, err := db.CreateFirewall(firewall("fw-one"), nil); !slices.Equal(fieldsOf(err), []string{"label"}) {
		t.Fatalf("duplicate label: %v", err)
	}
	// A second firewall for a, and a missing NodeBalancer: refused together, nothing stored.
	if _, err := db.CreateFirewall(firewall("fw-two"), []int{b.ID, a.ID, 99}); !slices.Equal(fieldsOf(err),
		[]string{"devices.nodebalancers[1]", "devices.nodebalancers[2]"}) {
		t.Fatalf("create with bad devices: %v", err)
	}
	if all, _ := db.ListFirewalls(); len(all) != 1 {
		t.Fatalf("%d firewalls after a refused create", len(all))
	}
	fw2, err := db.CreateFirewall(firewall("fw-two"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateFirewallDevice(fw2.ID, a.ID); !slices.Equal(fieldsOf(err), []string{"id"}) {
		t.Fatalf("second firewall on a NodeBalancer: %v", err)
	}
	if _, err := db.CreateFirewallDevice(fw1.ID, a.ID); !slices.Equal(fieldsOf(err), []string{"id"}) {
		t.Fatalf("same device twice: %v", err)
	}
	d, err := db.CreateFirewallDevice(fw2.ID, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	// firewall_id on create, in the create's transaction.
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "c"}, nil, db.AttachFirewall(99)); !slices.Equal(fieldsOf(err), []string{"firewall_id"}) {
		t.Fatalf("missing firewall: %v", err)
	}
	if all, _ := db.ListNodeBalancers(); len(all) != 2 {
		t.Fatalf("%d NodeBalancers after a refused create", len(all))
	}
	c, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "c"}, nil, db.AttachFirewall(fw2.ID))
	if err != nil {
		t.Fatal(err)
	}
	st, err := db.State()
	if err != nil {
		t.Fatal(err)
	}
	guard := map[int]int{}
	for _, nb := range st.NodeBalancers {
		if nb.Firewall != nil {
			guard[nb.ID] = nb.Firewall.ID
		}
	}
	if guard[a.ID] != fw1.ID || guard[b.ID] != fw2.ID || guard[c.ID] != fw2.ID {
		t.Fatalf("state guards %v", guard)
	}
	// Rules advance their version; label changes keep rules.
	r := firewall("x").Rules
	r.InboundPolicy = "ACCEPT"
	got, err := db.UpdateFirewallRules(fw2.ID, r)
	if err != nil || got.Version != 2 || got.Fingerprint == fw2.Rules.Fingerprint {
		t.Fatalf("rules update: %+v %v", got, err)
	}
	if _, err := db.UpdateFirewall(fw2.ID, func(f *model.Firewall) error { f.Label = "fw-one"; return nil }); !slices.Equal(fieldsOf(err), []string{"label"}) {
		t.Fatalf("relabel to a used label: %v", err)
	}
	// Deleting a NodeBalancer removes its device; deleting a firewall removes all of its.
	if err := db.DeleteNodeBalancer(c.ID); err != nil {
		t.Fatal(err)
	}
	if devs, _ := db.FirewallDevices(fw2.ID); len(devs) != 1 || devs[0].ID != d.ID {
		t.Fatalf("devices after deleting c: %+v", devs)
	}
	if err := db.DeleteFirewall(fw2.ID); err != nil {
		t.Fatal(err)
	}
	if fws, _ := db.NodeBalancerFirewalls(b.ID); len(fws) != 0 {
		t.Fatalf("b still guarded by %+v", fws)
	}
	if _, err := db.FirewallDevices(fw2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("devices of a deleted firewall: %v", err)
	}
	if _, err := db.CreateFirewallDevice(fw1.ID, b.ID); err != nil {
		t.Fatalf("b is free again: %v", err)
	}
}

func TestIPv6FromThePoolAndForExistingNodeBalancers(t *testing.T) {
	dir := t.TempDir()
	bk, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	db := store.New(bk, store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24")}})
	old, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "old"}, nil)
	if err != nil || old.IPv6 != "" {
		t.Fatalf("without an IPv6 pool: %+v %v", old, err)
	}
	if n, err := db.AssignIPv6(); n != 0 || err != nil {
		t.Fatalf("AssignIPv6 without an IPv6 network: %d %v", n, err)
	}
	db.Close()
	bk, err = bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	db = store.New(bk, store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24"), netip.MustParsePrefix("fd00:5::/64")}})
	t.Cleanup(func() { db.Close() })
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "new"}, nil)
	if err != nil || nb.IPv6 != "fd00:5::1" || nb.IPv4 != "127.0.1.2" {
		t.Fatalf("new: %+v %v", nb, err)
	}
	if n, err := db.AssignIPv6(); n != 1 || err != nil {
		t.Fatalf("AssignIPv6: %d %v", n, err)
	}
	got, _ := db.NodeBalancer(old.ID)
	if got.IPv6 != "fd00:5::2" {
		t.Fatalf("old got %q", got.IPv6)
	}
	up, err := db.UpdateNodeBalancer(old.ID, func(nb *model.NodeBalancer) error { nb.IPv6 = "fd00:5::99"; return nil })
	if err != nil || up.IPv6 != "fd00:5::2" {
		t.Fatalf("an update must keep ipv6: %+v %v", up, err)
	}
}
