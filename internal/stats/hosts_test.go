package stats

import (
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// Two hosts on one store: each counts its own traffic, persists it under its own
// name, and either one's reads add both up, each byte once — also after a host
// restarts from its blob.
func TestHostsAddUpEachOthersTraffic(t *testing.T) {
	db := teststore.New(t, statsPool)
	nb, _, _ := createNB(t, db, "shared")
	c := &clock{utc("2025-03-10T12:00:03Z")}
	host := func(id string, reg *Registry) *Stats {
		s, err := New(Options{DB: db, Registry: reg, Now: c.now, Hour: testHour, Day: testDay, Log: quiet, HostID: id})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ra, rb := NewRegistry(), NewRegistry()
	a, b := host("a", ra), host("b", rb)
	ra.NodeBalancer(nb.ID).BytesIn.Add(3 << 20)
	ra.NodeBalancer(nb.ID).Connections.Add(10)
	rb.NodeBalancer(nb.ID).BytesIn.Add(5 << 20)
	rb.NodeBalancer(nb.ID).Connections.Add(30)
	at := utc("2025-03-10T12:00:10Z")
	a.sample(at)
	b.sample(at)
	c.t = utc("2025-03-10T12:00:12Z")
	if err := b.persist(); err != nil {
		t.Fatal(err)
	}
	// a sees its own live counters plus b's persisted ones; b's own counters are
	// not counted twice by b.
	if in, _, _ := a.NodeBalancerTransfer(nb.ID); in != 8 {
		t.Fatalf("transfer through a: %v MB, want 8", in)
	}
	if in, _, _ := b.NodeBalancerTransfer(nb.ID); in != 5 {
		t.Fatalf("transfer through b before a persisted: %v MB, want 5", in)
	}
	if err := a.persist(); err != nil {
		t.Fatal(err)
	}
	if in, _, _ := b.NodeBalancerTransfer(nb.ID); in != 8 {
		t.Fatalf("transfer through b: %v MB, want 8", in)
	}
	conns := a.Series(nb.ID, "shared", PeriodHour).Data.Connections
	if last := conns[len(conns)-1]; last[1] != 4 { // 40 connections over the 10 s bucket
		t.Fatalf("connections per second through a: %v, want 4", last)
	}
	// a restarts: it takes its own part back from its blob and counts nothing twice.
	a2 := host("a", NewRegistry())
	if in, _, _ := a2.NodeBalancerTransfer(nb.ID); in != 8 {
		t.Fatalf("transfer through a restarted: %v MB, want 8", in)
	}
}
