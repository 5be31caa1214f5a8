package httpproxy

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rrRouter is a plain round robin over backends, for the load harness.
type rrRouter struct {
	backends []*Backend
	n        atomic.Uint64
}

func (r *rrRouter) Route(_ netip.Addr, _ []byte, tried *Backend) *Backend {
	return r.backends[r.n.Add(1)%uint64(len(r.backends))]
}
func (r *rrRouter) Done(*Backend, Result) {}

// TestLoadHarness runs the proxy for a manual load test (wrk) and is skipped unless
// HTTPPROXY_HARNESS is set to "listen=ADDR backends=A,B seconds=N", e.g.
//
//	HTTPPROXY_HARNESS="listen=127.0.0.1:8084 backends=127.0.0.2:9001,127.0.0.3:9001 seconds=20" \
//	  go test -run TestLoadHarness -cpuprofile cpu.out ./internal/httpproxy
func TestLoadHarness(t *testing.T) {
	spec := os.Getenv("HTTPPROXY_HARNESS")
	if spec == "" {
		t.Skip("manual load harness; set HTTPPROXY_HARNESS")
	}
	opts := map[string]string{}
	for _, f := range strings.Fields(spec) {
		k, v, _ := strings.Cut(f, "=")
		opts[k] = v
	}
	r := &rrRouter{}
	for _, a := range strings.Split(opts["backends"], ",") {
		r.backends = append(r.backends, NewBackend(netip.MustParseAddrPort(a), BackendOptions{}))
	}
	secs, _ := time.ParseDuration(opts["seconds"] + "s")
	ln, err := net.Listen("tcp", opts["listen"])
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(&Config{Router: r}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), secs)
	defer cancel()
	var wg sync.WaitGroup
	go func() { <-ctx.Done(); ln.Close() }()
	local := netip.MustParseAddrPort(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); srv.ServeConn(ctx, c, local) }()
	}
	wg.Wait()
}
