package dataplane

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// acceptBenchCases are the set-ups BenchmarkAcceptTCP compares; each may change the
// NodeBalancer before the timed loop (firewall_bench_test.go adds some).
var acceptBenchCases = []struct {
	name  string
	setup func(b *testing.B, db *store.DB, nbID int)
}{
	{"plain", func(*testing.B, *store.DB, int) {}},
}

// BenchmarkAcceptTCP measures the accept path of a tcp config: one new client
// connection per iteration, a byte there and back through a node, then close.
func BenchmarkAcceptTCP(b *testing.B) {
	for i, c := range acceptBenchCases {
		b.Run(c.name, func(b *testing.B) {
			bk, err := bolt.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			pool := netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 91, byte(i), 0}), 24)
			db := store.New(bk, store.Options{FrontendPool: []netip.Prefix{pool}})
			p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx, db) }()
			defer func() { cancel(); <-done; db.Close() }()
			ln := testnet.ServeConns(b, "127.92.0.1:0", func(c net.Conn) {
				var buf [1]byte
				if _, err := io.ReadFull(c, buf[:]); err == nil {
					c.Write(buf[:])
				}
			})
			n := model.NewNode()
			n.Label, n.Address = "echo", ln.Addr().String()
			cfg := model.NewConfig()
			cfg.Protocol, cfg.Port = model.ProtocolTCP, 9000
			nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{{Config: cfg, Nodes: []model.Node{n}}})
			if err != nil {
				b.Fatal(err)
			}
			c.setup(b, db, nb.ID)
			front := nb.IPv4 + ":9000"
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 93, 0, 1)}}
			roundTrip := func() error {
				conn, err := d.Dial("tcp", front)
				if err != nil {
					return err
				}
				defer conn.Close()
				if _, err := conn.Write([]byte{'x'}); err != nil {
					return err
				}
				var buf [1]byte
				_, err = io.ReadFull(conn, buf[:])
				return err
			}
			deadline := time.Now().Add(2 * time.Second)
			for roundTrip() != nil { // the listener, and the set-up, have been applied
				if time.Now().After(deadline) {
					b.Fatal("the config never served")
				}
				time.Sleep(5 * time.Millisecond)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := roundTrip(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
