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

// spliceSession starts spliceCopy both ways between two loopback connections, as a tcp
// session does, with an echo server behind: it returns the client's end.
func spliceSession(b *testing.B) *net.TCPConn {
	b.Helper()
	echo := testnet.ServeConns(b, "127.0.62.2:0", func(c net.Conn) { io.Copy(c, c) })
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 62, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	client, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		b.Fatal(err)
	}
	front, err := ln.AcceptTCP()
	if err != nil {
		b.Fatal(err)
	}
	node, err := net.DialTCP("tcp", nil, echo.Addr().(*net.TCPAddr))
	if err != nil {
		b.Fatal(err)
	}
	var c1, c2 counter
	done := make(chan struct{}, 2)
	go func() { spliceCopy(node, front, nil, &c1); node.CloseWrite(); done <- struct{}{} }()
	go func() { spliceCopy(front, node, nil, &c2); front.CloseWrite(); done <- struct{}{} }()
	b.Cleanup(func() {
		client.Close()
		<-done
		<-done
		front.Close()
		node.Close()
	})
	return client
}

// BenchmarkSpliceRoundTrip is one small request and its echo through an established
// tcp session: the copy path of interactive protocols (the copy buffer, not the pipe).
func BenchmarkSpliceRoundTrip(b *testing.B) {
	b.ReportAllocs()
	c := spliceSession(b)
	msg := make([]byte, 128)
	buf := make([]byte, 128)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpliceBulk is 1 MiB through an established session and back: the splice
// (pipe) path.
func BenchmarkSpliceBulk(b *testing.B) {
	b.ReportAllocs()
	c := spliceSession(b)
	msg := make([]byte, 1<<20)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		go c.Write(msg)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTCPSession is a whole tcp session through a Plane: connect, one small
// request echoed by the node, close. It includes what each session costs the balancer
// (accept, the connect to the node and its socket options, two copy goroutines).
func BenchmarkTCPSession(b *testing.B) {
	b.ReportAllocs()
	echo := testnet.ServeConns(b, "127.0.62.4:0", func(c net.Conn) { io.Copy(c, c) })
	p := New(Options{Log: slog.New(slog.DiscardHandler), CookieKey: []byte("k")})
	cfg := model.NewConfig()
	cfg.ID, cfg.Port, cfg.Protocol = 1, 9000, model.ProtocolTCP
	n := model.NewNode()
	n.ID, n.Label, n.Address = 1, "echo", echo.Addr().String()
	p.Reconcile(store.State{NodeBalancers: []store.NodeBalancerState{{
		NodeBalancer: model.NodeBalancer{ID: 1, IPv4: "127.0.62.3", Region: "local"},
		Configs:      []model.ConfigWithNodes{{Config: cfg, Nodes: []model.Node{n}}},
	}}})
	b.Cleanup(p.Close)
	if len(p.Failed()) > 0 {
		b.Fatal(p.Failed())
	}
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", "127.0.62.3:9000")
		if err != nil {
			b.Fatal(err)
		}
		c.Write(msg)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkKeepAliveLaterStopped is what keep-alive costs a tcp session that ends
// before keepAliveAfter: a timer started and stopped (compare BenchmarkKeepAliveOptions,
// the four setsockopt calls a longer session pays once).
func BenchmarkKeepAliveLaterStopped(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		keepAliveLater(nil, keepAliveAfter).Stop()
	}
}

// BenchmarkConnSetAddRemove is what tracking one more connection costs a tcp session
// (its node's, so that a stop can close it).
func BenchmarkConnSetAddRemove(b *testing.B) {
	b.ReportAllocs()
	var s connSet
	var c net.TCPConn
	for range b.N {
		s.remove(s.add(&c))
	}
}
