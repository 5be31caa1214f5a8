package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// TestParkedHTTPConnections: idle keep-alive http connections, parked without a
// goroutine (httpproxy.ServeConnAsync), still hold their --max-conns slot and the
// active counters until they close; closing the plane closes them at once instead of
// waiting out the grace period.
func TestParkedHTTPConnections(t *testing.T) {
	e := newEnv(t, "127.0.62.0/24", func(o *Options) { o.Grace = 20 * time.Second })
	nameServer(t, "127.0.63.2:9011", "web")
	nb := e.create(config(model.ProtocolHTTP, 80, node("web", "127.0.63.2:9011", 50)))
	waitFor(t, 2*time.Second, "the readiness probes to end", func() bool { return e.plane.active.Load() == 0 })
	e.plane.mu.Lock()
	parking := e.plane.listeners[1].http.Parking()
	e.plane.mu.Unlock()
	if !parking {
		t.Fatal("parking is off by default")
	}

	get := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", nb.IPv4+":80")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: park.test\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		io.ReadAll(resp.Body)
		return c, br
	}
	a, _ := get()
	b, bbr := get()
	time.Sleep(100 * time.Millisecond) // both parked
	stats := e.plane.opts.Stats.Config(1)
	if n, act := e.plane.active.Load(), stats.Active.Load(); n != 2 || act != 2 {
		t.Fatalf("active %d, config active %d with two idle connections; want 2 and 2", n, act)
	}
	a.Close()
	waitFor(t, 2*time.Second, "the closed connection's slot back", func() bool {
		return e.plane.active.Load() == 1 && stats.Active.Load() == 1
	})

	start := time.Now()
	closed := make(chan struct{})
	go func() { e.plane.Close(); close(closed) }()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bbr.ReadByte(); err == nil {
		t.Fatal("a parked connection got bytes at close")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the plane did not close within 5s (the grace is 20s): a parked connection was waited for")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closing took %v", d)
	}
	if n := e.plane.active.Load(); n != 0 {
		t.Errorf("active %d after close", n)
	}
}

// TestCloseEndsAnActiveHTTPConnectionAfterGrace: an http connection served with
// parking is in no list of the listener's own; when the grace is over, Close still
// closes one that is active (here waiting for a node that answers only after the
// grace) through the Server's lists: the client sees its connection closed, not the
// late answer. (The socket closes when the exchange in flight returns: the goroutine
// serving it holds it inside its raw read, as ServeConn's always did.)
func TestCloseEndsAnActiveHTTPConnectionAfterGrace(t *testing.T) {
	e := newEnv(t, "127.0.62.0/24")
	ln, err := net.Listen("tcp", "127.0.63.2:9012")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(e.plane.opts.Grace + 2*time.Second)
		}
		io.WriteString(w, "web")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	nb := e.create(config(model.ProtocolHTTP, 80, node("web", "127.0.63.2:9012", 50)))
	waitFor(t, 2*time.Second, "the readiness probes to end", func() bool { return e.plane.active.Load() == 0 })
	c, err := net.Dial("tcp", nb.IPv4+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: park.test\r\n\r\n")
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	go e.plane.Close()
	c.SetReadDeadline(time.Now().Add(e.plane.opts.Grace + 5*time.Second))
	b, err := io.ReadAll(c)
	if len(b) > 0 || err != nil {
		t.Fatalf("after %v the client read %q (%v); want its connection closed with nothing (the %v grace is over before the answer)",
			time.Since(start).Round(time.Millisecond), b, err, e.plane.opts.Grace)
	}
}
