package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/linode/linodego"
)

// TestIdleHTTPConnectionsHeld: plain http keep-alive connections held idle through
// the real server (accepted raw, parked between requests: internal/httpproxy/park.go,
// fdconn.go) stay usable past several of the poller's sweeps, and the waits of an
// active one — a head and a body arriving in pieces — go through the same sockets.
func TestIdleHTTPConnectionsHeld(t *testing.T) {
	e := newEnv(t)
	web := e.httpBackend("web", 1)
	l := e.balancer(linodego.NodeBalancerConfigCreateOptions{Protocol: linodego.ProtocolHTTP}, nodeSpec{name: "web", addr: web.addr})
	settle(t, e.httpClient(0, false), l.url("/"), "", "web")

	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	roundTrip := func(c conn, req string) string {
		t.Helper()
		c.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c.c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("%d, close %v: %q", resp.StatusCode, resp.Close, b)
		}
		return string(b)
	}
	const get = "GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"
	const n = 300
	conns := make([]conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", l.front.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = conn{c, bufio.NewReader(c)}
		if got := roundTrip(conns[i], get); got != "web" {
			t.Fatalf("connection %d: %q", i, got)
		}
	}
	time.Sleep(1200 * time.Millisecond) // idle across two sweeps (500 ms) of the parked set
	for i, c := range conns {
		if got := roundTrip(c, get); got != "web" {
			t.Fatalf("connection %d after idling: %q", i, got)
		}
	}

	// A head in two pieces, then a body in two: the connection waits for each
	// piece on its raw socket, and stays usable.
	c := conns[0]
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c.c, "POST /upload HTTP/1.1\r\nHost: idle.test\r\n")
	time.Sleep(200 * time.Millisecond)
	io.WriteString(c.c, "Content-Length: 10\r\n\r\nhello")
	time.Sleep(200 * time.Millisecond)
	if got := roundTrip(c, "world"); got != "web" {
		t.Fatalf("POST in pieces: %q", got)
	}
	if got := roundTrip(c, get); got != "web" {
		t.Fatalf("after the POST: %q", got)
	}
	if h := web.hits.Load(); h < 2*n+2 {
		t.Errorf("the backend saw %d requests, want at least %d", h, 2*n+2)
	}
}
