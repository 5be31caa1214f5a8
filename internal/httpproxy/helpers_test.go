package httpproxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testRouter routes to its backends in turn, honours a cookie naming one of them, and
// records every Done.
type testRouter struct {
	backends []*Backend
	next     atomic.Uint64

	mu      sync.Mutex
	results []doneRecord
	routes  []routeRecord
}

type doneRecord struct {
	b *Backend
	r Result
}

type routeRecord struct {
	client netip.Addr
	cookie string
	tried  *Backend
}

func (tr *testRouter) Route(client netip.Addr, cookie []byte, tried *Backend) *Backend {
	tr.mu.Lock()
	tr.routes = append(tr.routes, routeRecord{client, string(cookie), tried})
	tr.mu.Unlock()
	if len(tr.backends) == 0 {
		return nil
	}
	for _, b := range tr.backends {
		if cookie != nil && string(cookie) == b.Cookie() && b != tried {
			return b
		}
	}
	for range tr.backends {
		b := tr.backends[tr.next.Add(1)%uint64(len(tr.backends))]
		if b != tried {
			return b
		}
	}
	return nil
}

func (tr *testRouter) Done(b *Backend, r Result) {
	tr.mu.Lock()
	tr.results = append(tr.results, doneRecord{b, r})
	tr.mu.Unlock()
}

func (tr *testRouter) done() []doneRecord {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]doneRecord(nil), tr.results...)
}

// waitDone waits until n Done calls were recorded (Done runs after the client may
// already have its response).
func (tr *testRouter) waitDone(t *testing.T, n int) []doneRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := tr.done()
		if len(d) >= n || time.Now().After(deadline) {
			return d
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testBackend is a net/http server on a loopback address that counts the connections
// it accepts.
type testBackend struct {
	*httptest.Server
	accepts atomic.Int64
	addr    netip.AddrPort
}

func newTestBackend(t *testing.T, ip string, h http.Handler) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBackend{}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			tb.accepts.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tb.Server = srv
	tb.addr = netip.MustParseAddrPort(ln.Addr().String())
	return tb
}

// testProxy is a Server behind a loopback listener.
type testProxy struct {
	srv    *Server
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, cfg *Config) *testProxy {
	t.Helper()
	return startProxyWith(t, cfg, nil)
}

// startProxyBlocking is startProxy with client connections hidden behind a wrapper,
// so that they take the blocking path (as TLS connections do) instead of serveRaw.
func startProxyBlocking(t *testing.T, cfg *Config) *testProxy {
	t.Helper()
	return startProxyWith(t, cfg, func(c net.Conn) net.Conn { return struct{ net.Conn }{c} })
}

// startProxyWith is startProxy with each accepted connection passed through wrap.
func startProxyWith(t *testing.T, cfg *Config, wrap func(net.Conn) net.Conn) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{srv: NewServer(cfg, nil), addr: ln.Addr().String(), cancel: cancel}
	local := netip.MustParseAddrPort(p.addr)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if wrap != nil {
				c = wrap(c)
			}
			p.wg.Add(1)
			go p.srv.ServeConnAsync(ctx, c, local, p.wg.Done)
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("proxy connections did not end after stop")
		}
	})
	return p
}

// rawClient is a client connection that writes raw bytes and reads responses.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialProxy(t *testing.T, p *testProxy) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := rc.c.Write([]byte(s)); err != nil {
		rc.t.Fatal(err)
	}
}

// response reads one response; method is the request's method (for HEAD).
func (rc *rawClient) response(method string) *http.Response {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading response: %v", err)
	}
	return resp
}

// body reads the whole body of resp.
func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	return sb.String()
}

// closedByPeer reports whether the proxy closed the client connection.
func (rc *rawClient) closedByPeer() bool {
	rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := rc.br.ReadByte()
	return err != nil
}

func backendFor(tb *testBackend, cookie string) *Backend {
	return NewBackend(tb.addr, BackendOptions{Cookie: cookie})
}
