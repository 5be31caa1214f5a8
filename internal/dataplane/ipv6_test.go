package dataplane

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
)

// A host not set up for its IPv6 pool (no AnyIP route here, outside a namespace)
// still serves the NodeBalancer's ipv4. No traffic goes to the IPv6 address.
func TestIPv4ServesWhenIPv6CannotBind(t *testing.T) {
	b, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	db := store.New(b, store.Options{FrontendPool: []netip.Prefix{
		netip.MustParsePrefix("127.94.0.0/24"), netip.MustParsePrefix("fd00:94::/64")}})
	p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, db) }()
	t.Cleanup(func() { cancel(); <-done; db.Close() })
	c := model.NewConfig()
	c.Port, c.Protocol = 9000, model.ProtocolTCP
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{{Config: c}})
	if err != nil {
		t.Fatal(err)
	}
	if nb.IPv6 != "fd00:94::1" {
		t.Fatalf("ipv6 %q", nb.IPv6)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", nb.IPv4+":9000", time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ipv4 frontend does not listen: %v (failed: %v)", err, p.Failed())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(p.Failed()) != 0 {
		t.Fatalf("failed configs %v", p.Failed())
	}
}
