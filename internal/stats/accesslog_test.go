package stats

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/httpproxy"
)

func TestAccessLogWritesOneJSONLinePerEntry(t *testing.T) {
	var buf bytes.Buffer
	a := NewAccessLog(&buf, 16)
	start := utc("2025-03-10T12:00:00Z")
	be := httpproxy.NewBackend(netip.MustParseAddrPort("127.0.94.1:8080"), httpproxy.BackendOptions{})
	defer be.Close()
	a.HTTP(3, 4, httpproxy.AccessEntry{Start: start, Duration: 1500 * time.Microsecond,
		Client: netip.MustParseAddrPort("127.0.0.9:5000"), Local: netip.MustParseAddrPort("127.0.93.1:80"),
		Method: "GET", Target: "/x?y=1", Status: 200, Backend: be, ReqBytes: 80, RespBytes: 1024})
	a.HTTP(3, 4, httpproxy.AccessEntry{Start: start, Method: "GET", Target: "/", Status: 503, Failure: httpproxy.FailConnect})
	a.TCP(3, 5, TCPEntry{Start: start, Duration: 2 * time.Second, Client: netip.MustParseAddrPort("127.0.0.9:5001"),
		Local: netip.MustParseAddrPort("127.0.93.1:9000"), Node: netip.MustParseAddrPort("127.0.94.2:9000"), NodeID: 7,
		BytesIn: 1 << 20, BytesOut: 2 << 20})
	a.TCP(3, 5, TCPEntry{Start: start})

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run writes what is queued, then returns
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []map[string]any{
		{"msg": "access", "proto": "http", "nodebalancer_id": 3.0, "config_id": 4.0, "client": "127.0.0.9:5000",
			"addr": "127.0.93.1:80", "node": "127.0.94.1:8080", "method": "GET", "target": "/x?y=1", "status": 200.0,
			"bytes_in": 80.0, "bytes_out": 1024.0, "duration_ms": 1.5, "time": "2025-03-10T12:00:00.0015Z"},
		{"proto": "http", "status": 503.0, "failure": "connect"},
		{"proto": "tcp", "config_id": 5.0, "node": "127.0.94.2:9000", "node_id": 7.0, "bytes_in": 1048576.0,
			"bytes_out": 2097152.0, "duration_ms": 2000.0},
		{"proto": "tcp", "failure": "no node reachable"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not JSON: %s", i, line)
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v\n%s", i, k, got[k], v, line)
			}
		}
	}
}

func TestAccessLogDropsInsteadOfBlocking(t *testing.T) {
	a := NewAccessLog(&bytes.Buffer{}, 2)
	done := make(chan struct{})
	go func() {
		for range 5 {
			a.TCP(1, 1, TCPEntry{}) // no writer runs: the queue fills after two
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a full access log blocked its caller")
	}
	if got := a.Dropped(); got != 3 {
		t.Errorf("dropped %d, want 3", got)
	}
}

// The hook on the data plane's hot path: queueing must not allocate.
func BenchmarkAccessLogTCP(b *testing.B) {
	a := NewAccessLog(&bytes.Buffer{}, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	e := TCPEntry{Start: time.Now(), Client: netip.MustParseAddrPort("127.0.0.9:5001"), BytesIn: 100}
	b.ReportAllocs()
	for b.Loop() {
		a.TCP(1, 2, e)
	}
	cancel()
	<-done
}

func TestAccessLogWritesUDPSessions(t *testing.T) {
	var buf bytes.Buffer
	a := NewAccessLog(&buf, 4)
	a.UDP(3, 6, UDPEntry{Start: utc("2025-03-10T12:00:00Z"), Duration: 2500 * time.Millisecond,
		Client: netip.MustParseAddrPort("127.0.0.9:5353"), Local: netip.MustParseAddrPort("127.0.93.1:53"),
		Node: netip.MustParseAddrPort("127.0.94.2:53"), NodeID: 8, BytesIn: 120, BytesOut: 900,
		DatagramsIn: 3, DatagramsOut: 4, End: "idle"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &got); err != nil {
		t.Fatalf("not one JSON line: %s", buf.String())
	}
	want := map[string]any{"proto": "udp", "config_id": 6.0, "client": "127.0.0.9:5353", "addr": "127.0.93.1:53",
		"node": "127.0.94.2:53", "node_id": 8.0, "bytes_in": 120.0, "bytes_out": 900.0, "datagrams_in": 3.0,
		"datagrams_out": 4.0, "end": "idle", "duration_ms": 2500.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v\n%s", k, got[k], v, buf.String())
		}
	}
	for _, k := range []string{"method", "status", "failure"} {
		if _, ok := got[k]; ok {
			t.Errorf("a udp line carries %q: %s", k, buf.String())
		}
	}
}
