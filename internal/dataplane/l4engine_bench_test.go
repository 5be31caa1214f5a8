package dataplane

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// BenchmarkTCPBulk downloads 64 MiB per iteration through a tcp config, on each
// engine: the node writes it and closes, the client reads to the end.
func BenchmarkTCPBulk(b *testing.B) {
	const size = 64 << 20
	for i, eng := range []string{TCPEngineEpoll, TCPEngineGoroutine} {
		b.Run(eng, func(b *testing.B) {
			block := make([]byte, 1<<20)
			node := testnet.ServeConns(b, "127.0.186.2:0", func(c net.Conn) {
				for n := 0; n < size; n += len(block) {
					if _, err := c.Write(block); err != nil {
						return
					}
				}
			})
			p := New(Options{Log: slog.New(slog.DiscardHandler), CookieKey: []byte("k"), TCPEngine: eng})
			cfg := model.NewConfig()
			cfg.ID, cfg.Port, cfg.Protocol = 1, 9000+i, model.ProtocolTCP
			n := model.NewNode()
			n.ID, n.Label, n.Address = 1, "bulk", node.Addr().String()
			p.Reconcile(store.State{NodeBalancers: []store.NodeBalancerState{{
				NodeBalancer: model.NodeBalancer{ID: 1, IPv4: "127.0.186.1", Region: "local"},
				Configs:      []model.ConfigWithNodes{{Config: cfg, Nodes: []model.Node{n}}},
			}}})
			b.Cleanup(p.Close)
			addr := "127.0.186.1:" + map[int]string{0: "9000", 1: "9001"}[i]
			b.SetBytes(size)
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				got, err := io.Copy(io.Discard, c)
				c.Close()
				if err != nil || got != size {
					b.Fatalf("read %d bytes (%v), want %d", got, err, size)
				}
			}
		})
	}
}
