package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// closingBackend answers the first request of each connection and closes the
// connection, without answering, on the second: the race of a backend closing a
// keep-alive connection just as a request arrives on it. It counts the requests it
// read, by method and path.
type closingBackend struct {
	mu   sync.Mutex
	seen map[string]int
}

func newClosingBackend(t *testing.T) (*closingBackend, *Backend) {
	cb := &closingBackend{seen: map[string]int{}}
	ln := testnet.ServeConns(t, "127.0.0.2:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			cb.mu.Lock()
			cb.seen[req.Method+" "+req.URL.Path]++
			cb.mu.Unlock()
			if i == 1 {
				return // read, maybe acted on, never answered
			}
			if req.Method == "HEAD" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return cb, NewBackend(netip.MustParseAddrPort(ln.Addr().String()), BackendOptions{})
}

func (cb *closingBackend) count(key string) int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.seen[key]
}

// TestResendOnlyReplayableRequests: a request that met a pooled connection closing
// under it reaches the backend a second time only when it may run twice (as Go's
// net/http decides); a POST is answered 502 and reached the backend once.
func TestResendOnlyReplayableRequests(t *testing.T) {
	tests := []struct {
		name, request, key   string
		wantStatus, wantSeen int
	}{
		{"POST", "POST /pay HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", "POST /pay", 502, 1},
		{"PATCH", "PATCH /pay HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", "PATCH /pay", 502, 1},
		{"DELETE", "DELETE /pay HTTP/1.1\r\nHost: h\r\n\r\n", "DELETE /pay", 502, 1},
		{"POST with Idempotency-Key", "POST /pay HTTP/1.1\r\nHost: h\r\nIdempotency-Key: k1\r\nContent-Length: 3\r\n\r\nabc", "POST /pay", 200, 2},
		{"POST with X-Idempotency-Key", "POST /pay HTTP/1.1\r\nHost: h\r\nx-idempotency-key: k1\r\nContent-Length: 3\r\n\r\nabc", "POST /pay", 200, 2},
		{"GET", "GET /page HTTP/1.1\r\nHost: h\r\n\r\n", "GET /page", 200, 2},
		{"HEAD", "HEAD /page HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD /page", 200, 2},
		{"OPTIONS", "OPTIONS /page HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS /page", 200, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cb, b := newClosingBackend(t)
			tr := &testRouter{backends: []*Backend{b}}
			p := startProxy(t, &Config{Router: tr})
			rc := dialProxy(t, p)
			rc.send("GET /warm HTTP/1.1\r\nHost: h\r\n\r\n") // leaves a pooled connection
			if resp := rc.response("GET"); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			} else {
				body(t, resp)
			}
			rc.send(tc.request)
			method, _, _ := strings.Cut(tc.key, " ")
			resp := rc.response(method)
			body(t, resp)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := cb.count(tc.key); got != tc.wantSeen {
				t.Errorf("the backend read the request %d times, want %d", got, tc.wantSeen)
			}
		})
	}
}

// TestPOSTAvoidsPooledConnectionClosedWhileIdle: a backend that closed a pooled
// connection while it was idle (its keep-alive timeout) costs a POST nothing: the
// closed connection is noticed before the POST is written, and the POST goes out on a
// new one.
func TestPOSTAvoidsPooledConnectionClosedWhileIdle(t *testing.T) {
	var mu sync.Mutex
	posts := 0
	ln := testnet.ServeConns(t, "127.0.0.2:0", func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if req.Method == "POST" {
			mu.Lock()
			posts++
			mu.Unlock()
		}
		// Claims keep-alive, then closes 20 ms later.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(20 * time.Millisecond)
	})
	b := NewBackend(netip.MustParseAddrPort(ln.Addr().String()), BackendOptions{})
	tr := &testRouter{backends: []*Backend{b}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	for i := 0; i < 3; i++ {
		rc.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
		resp := rc.response("POST")
		if got := body(t, resp); resp.StatusCode != 200 || got != "ok" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, got)
		}
		time.Sleep(80 * time.Millisecond) // the backend closes the pooled connection
	}
	mu.Lock()
	defer mu.Unlock()
	if posts != 3 {
		t.Errorf("the backend read %d POSTs, want 3", posts)
	}
}
