package store_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// The test pool is 127.0.1.0/30: two usable addresses, .1 and .2.

func TestReservedAddressOutlivesItsNodeBalancerAndIsNeverHandedOut(t *testing.T) {
	db := teststore.New(t, pool)
	r, err := db.ReserveIP(model.ReservedIP{Region: "local", Tags: []string{"keep"}})
	if err != nil || r.Address != "127.0.1.1" || r.UsedBy != nil || r.Created.IsZero() {
		t.Fatalf("ReserveIP = %+v, %v", r, err)
	}
	// An NB that does not ask for it gets the other address.
	other, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil)
	if err != nil || other.IPv4 != "127.0.1.2" {
		t.Fatalf("unasked NB = %+v, %v; want 127.0.1.2", other, err)
	}
	// The pool is now full for NBs that do not ask: the reserved address is not theirs.
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil); !slices.Equal(fieldsOf(err), []string{"ipv4"}) {
		t.Fatalf("third NB: %v, want an ipv4 error", err)
	}
	// Asked for by address, it is given.
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", IPv4: "127.0.1.1"}, nil)
	if err != nil || nb.IPv4 != "127.0.1.1" {
		t.Fatalf("NB asking for the reserved address = %+v, %v", nb, err)
	}
	if got, err := db.ReservedIP("127.0.1.1"); err != nil || got.UsedBy == nil || got.UsedBy.ID != nb.ID {
		t.Fatalf("ReservedIP while used = %+v, %v", got, err)
	}
	// Deleting the NB leaves the reservation, unassigned, and still not handed out.
	if err := db.DeleteNodeBalancer(nb.ID); err != nil {
		t.Fatal(err)
	}
	got, err := db.ReservedIP("127.0.1.1")
	if err != nil || got.UsedBy != nil || !slices.Equal(got.Tags, []string{"keep"}) {
		t.Fatalf("ReservedIP after its NB was deleted = %+v, %v", got, err)
	}
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil); !slices.Equal(fieldsOf(err), []string{"ipv4"}) {
		t.Fatalf("an unasked NB after the delete: %v, want an ipv4 error", err)
	}
}

func TestUnreservingAnAddressInUseLeavesItToItsNodeBalancer(t *testing.T) {
	db := teststore.New(t, pool)
	if _, err := db.ReserveIP(model.ReservedIP{Region: "local", Address: "127.0.1.2"}); err != nil {
		t.Fatal(err)
	}
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", IPv4: "127.0.1.2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The CCM's order: release the address, then delete the NodeBalancer.
	if err := db.DeleteReservedIP("127.0.1.2"); err != nil {
		t.Fatal(err)
	}
	if got, err := db.NodeBalancer(nb.ID); err != nil || got.IPv4 != "127.0.1.2" {
		t.Fatalf("NB after its address was unreserved = %+v, %v", got, err)
	}
	if _, err := db.ReservedIP("127.0.1.2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReservedIP after delete: %v, want ErrNotFound", err)
	}
	if err := db.DeleteReservedIP("127.0.1.2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteReservedIP: %v, want ErrNotFound", err)
	}
	if err := db.DeleteNodeBalancer(nb.ID); err != nil {
		t.Fatal(err)
	}
	// Now an ordinary free address again.
	if nb2, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil); err != nil || nb2.IPv4 != "127.0.1.1" {
		t.Fatalf("next NB = %+v, %v", nb2, err)
	}
	if nb3, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil); err != nil || nb3.IPv4 != "127.0.1.2" {
		t.Fatalf("NB after that = %+v, %v (the unreserved address must be free again)", nb3, err)
	}
}

func TestReserveIPRules(t *testing.T) {
	db := teststore.New(t, pool)
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ addr, field string }{
		{"10.0.0.1", "address"},  // outside the pool
		{"127.0.1.0", "address"}, // the pool's network address
		{"127.0.1.3", "address"}, // its broadcast address
		{"::1", "address"},       // not IPv4
		{"nonsense", "address"},
	} {
		if _, err := db.ReserveIP(model.ReservedIP{Region: "local", Address: tt.addr}); !slices.Equal(fieldsOf(err), []string{tt.field}) {
			t.Errorf("ReserveIP(%s): %v, want a %s error", tt.addr, err, tt.field)
		}
	}
	// An address in use may be reserved: it then outlives its NodeBalancer.
	r, err := db.ReserveIP(model.ReservedIP{Region: "local", Address: nb.IPv4})
	if err != nil || r.UsedBy == nil || r.UsedBy.ID != nb.ID {
		t.Fatalf("reserving an address in use = %+v, %v", r, err)
	}
	if _, err := db.ReserveIP(model.ReservedIP{Region: "local", Address: nb.IPv4}); !slices.Equal(fieldsOf(err), []string{"address"}) {
		t.Fatalf("reserving it twice: %v", err)
	}
	r2, err := db.ReserveIP(model.ReservedIP{Region: "local"})
	if err != nil || r2.Address != "127.0.1.2" {
		t.Fatalf("ReserveIP of a free one = %+v, %v", r2, err)
	}
	if _, err := db.ReserveIP(model.ReservedIP{Region: "local"}); err == nil {
		t.Fatal("ReserveIP with the pool exhausted succeeded")
	}
	up, err := db.UpdateReservedIP("127.0.1.2", func(r *model.ReservedIP) error {
		r.Tags, r.Address, r.Region = []string{"a-tag"}, "127.0.1.1", "elsewhere"
		return nil
	})
	if err != nil || up.Address != "127.0.1.2" || up.Region != "local" || !slices.Equal(up.Tags, []string{"a-tag"}) {
		t.Fatalf("UpdateReservedIP = %+v, %v (only tags may change)", up, err)
	}
	all, err := db.ReservedIPs()
	if err != nil || len(all) != 2 || all[0].Address != "127.0.1.1" || all[1].Address != "127.0.1.2" {
		t.Fatalf("ReservedIPs = %+v, %v", all, err)
	}
	if _, err := db.ReservedIP("not-an-ip"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReservedIP(not-an-ip): %v", err)
	}
}

// TestSingleAddressPools: a pool may list single addresses (/32); each is usable,
// handed out and reservable.
func TestSingleAddressPools(t *testing.T) {
	db := teststore.New(t, "127.0.9.7/32", func(o *store.Options) {
		o.FrontendPool = append(o.FrontendPool, netip.MustParsePrefix("127.0.9.8/32"))
	})
	r, err := db.ReserveIP(model.ReservedIP{Region: "local", Address: "127.0.9.8"})
	if err != nil {
		t.Fatal(err)
	}
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil)
	if err != nil || nb.IPv4 != "127.0.9.7" {
		t.Fatalf("NB in a /32 pool = %+v, %v", nb, err)
	}
	nb2, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", IPv4: r.Address}, nil)
	if err != nil || nb2.IPv4 != "127.0.9.8" {
		t.Fatalf("NB asking for the reserved /32 = %+v, %v", nb2, err)
	}
}
