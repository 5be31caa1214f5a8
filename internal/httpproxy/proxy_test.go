package httpproxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// echoHeaders answers with the request's method, target and headers as "Name: value"
// lines, sorted as net/http saw them.
func echoHeaders() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s\n", r.Method, r.RequestURI, r.Proto)
		fmt.Fprintf(w, "Host: %s\n", r.Host)
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip", "Forwarded",
			"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "X-Custom", "X-Secret", "Cookie"} {
			if v, ok := r.Header[k]; ok {
				fmt.Fprintf(w, "%s: %s\n", k, strings.Join(v, " | "))
			}
		}
	})
}

func TestForwardingHeaders(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", echoHeaders())
	tests := []struct {
		name    string
		scheme  string
		request string
		want    []string
		absent  []string
	}{
		{
			name:    "plain http",
			scheme:  "http",
			request: "GET /a?b=1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
			want: []string{"GET /a?b=1 HTTP/1.1", "Host: example.test", "X-Forwarded-For: 127.0.0.1",
				"X-Forwarded-Proto: http", "X-Real-Ip: 127.0.0.1", "Forwarded: for=127.0.0.1;proto=http"},
		},
		{
			name:   "appends to client forwarding headers and replaces proto and real ip",
			scheme: "https",
			request: "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-For: 10.8.8.8\r\n" +
				"X-Forwarded-Proto: gopher\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=10.9.9.9\r\n\r\n",
			want: []string{"X-Forwarded-For: 10.9.9.9, 10.8.8.8, 127.0.0.1", "X-Forwarded-Proto: https",
				"X-Real-Ip: 127.0.0.1", "Forwarded: for=10.9.9.9, for=127.0.0.1;proto=https"},
		},
		{
			name:   "hop-by-hop headers removed, end-to-end kept",
			scheme: "http",
			request: "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n" +
				"Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\n" +
				"X-Secret: s\r\nX-Custom: kept\r\n\r\n",
			want:   []string{"X-Custom: kept"},
			absent: []string{"Connection:", "Keep-Alive:", "Proxy-Connection:", "Te:", "Trailer:", "Upgrade:", "X-Secret:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
			p := startProxy(t, &Config{Router: tr, Scheme: tt.scheme})
			rc := dialProxy(t, p)
			rc.send(tt.request)
			resp := rc.response("GET")
			got := body(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, body %q", resp.StatusCode, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w+"\n") {
					t.Errorf("backend saw\n%s\nwant line %q", got, w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("backend saw\n%s\nwant no %q", got, a)
				}
			}
		})
	}
}

func TestForwardedQuotesIPv6Client(t *testing.T) {
	req := &request{}
	head := "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	if err := parseRequest([]byte(head), req, false); err != nil {
		t.Fatal(err)
	}
	out := string(appendRequestHead(nil, req, netip.MustParseAddr("2001:db8::1"), netip.AddrPort{}, "https", false))
	for _, w := range []string{"X-Forwarded-For: 2001:db8::1\r\n", "X-Real-IP: 2001:db8::1\r\n",
		"Forwarded: for=\"[2001:db8::1]\";proto=https\r\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("head\n%s\nwant %q", out, w)
		}
	}
}

func TestKeepAliveReusesBackendConnections(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	const n = 50
	for i := 0; i < n; i++ {
		rc.send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		resp := rc.response("GET")
		if b := body(t, resp); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	// A second client connection reuses the same pooled backend connection.
	rc2 := dialProxy(t, p)
	rc2.send("GET /y HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp := rc2.response("GET"); resp.StatusCode != 200 {
		t.Fatalf("second client: %d", resp.StatusCode)
	}
	if got := be.accepts.Load(); got != 1 {
		t.Errorf("backend accepted %d connections for %d sequential requests, want 1", got, n+1)
	}
	d := tr.waitDone(t, n+1)
	for _, r := range d {
		if r.r.Status != 200 || r.r.Failed() || r.r.RespBytes == 0 || r.r.ReqBytes == 0 {
			t.Fatalf("Done result %+v", r.r)
		}
	}
}

func TestPipelinedRequests(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nPOST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
	for _, want := range []string{"/1", "/2", "/3"} {
		resp := rc.response("GET")
		if got := body(t, resp); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestHTTP10Client(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.Write([]byte("part1-"))
			w.(http.Flusher).Flush() // forces chunked encoding
			w.Write([]byte("part2"))
			return
		}
		io.WriteString(w, "hello")
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})

	t.Run("closes by default", func(t *testing.T) {
		rc := dialProxy(t, p)
		rc.send("GET / HTTP/1.0\r\n\r\n")
		resp := rc.response("GET")
		if b := body(t, resp); b != "hello" || !resp.Close {
			t.Fatalf("body %q, close %v", b, resp.Close)
		}
		if !rc.closedByPeer() {
			t.Error("connection stayed open after an HTTP/1.0 request without keep-alive")
		}
	})
	t.Run("keep-alive on request", func(t *testing.T) {
		rc := dialProxy(t, p)
		for i := 0; i < 2; i++ {
			rc.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp := rc.response("GET")
			if b := body(t, resp); b != "hello" || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("body %q, Connection %q", b, resp.Header.Get("Connection"))
			}
		}
	})
	t.Run("chunked response decoded", func(t *testing.T) {
		rc := dialProxy(t, p)
		rc.send("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		raw, err := io.ReadAll(rc.br)
		if err != nil {
			t.Fatal(err)
		}
		s := string(raw)
		if strings.Contains(strings.ToLower(s), "transfer-encoding") || !strings.HasSuffix(s, "\r\n\r\npart1-part2") {
			t.Errorf("response to HTTP/1.0 client:\n%q", s)
		}
	})
}

func TestConnectionCloseHonoured(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	resp := rc.response("GET")
	body(t, resp)
	if !resp.Close || !rc.closedByPeer() {
		t.Errorf("Connection: close missing or the connection left open")
	}
}

func TestNoBodyResponses(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("Etag", `"x"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	// On one connection: each response must end exactly where its framing says, or
	// the next one would be misread.
	rc.send("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp := rc.response("HEAD")
	if resp.StatusCode != 200 || resp.ContentLength != 11 || body(t, resp) != "" {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	for _, path := range []string{"/204", "/304", "/"} {
		rc.send("GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n")
		resp := rc.response("GET")
		b := body(t, resp)
		switch path {
		case "/204", "/304":
			if strconv.Itoa(resp.StatusCode) != path[1:] || b != "" {
				t.Errorf("%s: %d %q", path, resp.StatusCode, b)
			}
		default:
			if b != "hello world" {
				t.Errorf("GET after no-body responses: %q", b)
			}
		}
	}
}

func TestChunkedBothWays(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || len(r.TransferEncoding) != 1 {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Trailer", "X-Sum")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "[%s]", b)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "done")
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	for i := 0; i < 2; i++ {
		rc.send("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=\"v\"\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		resp := rc.response("POST")
		if b := body(t, resp); b != "[abcde][abcde][abcde]" || len(resp.TransferEncoding) != 1 {
			t.Fatalf("status %d body %q TE %v", resp.StatusCode, b, resp.TransferEncoding)
		}
		if resp.Trailer.Get("X-Sum") != "done" {
			t.Errorf("trailer %v", resp.Trailer)
		}
	}
}

func TestExpectContinueRelayed(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // net/http sends 100 Continue on the first read
		w.Write(b)
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	// The client waits for 100 before sending its body, as curl does.
	rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := rc.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim response %q, %v", line, err)
	}
	if blank, _ := rc.br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("interim head not ended: %q", blank)
	}
	rc.send("hello")
	resp := rc.response("PUT")
	if b := body(t, resp); b != "hello" {
		t.Fatalf("body %q", b)
	}
	// The connection stays usable.
	rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp := rc.response("GET"); resp.StatusCode != 200 {
		t.Fatalf("next request: %d", resp.StatusCode)
	}
}

// hashHandler answers a POST with the size and SHA-256 of its body, and a GET of
// /big?n=N with N bytes.
func hashHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				w.WriteHeader(500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for n > 0 {
			k := min(n, len(buf))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
}

func TestLargeBodiesStreamBothWays(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", hashHandler())
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	const size = 64 << 20

	t.Run("upload", func(t *testing.T) {
		for _, chunked := range []bool{false, true} {
			rc := dialProxy(t, p)
			h := sha256.New()
			pattern := bytes.Repeat([]byte("nodebalancer!"), 5000)
			if chunked {
				rc.send("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
			} else {
				rc.send("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n")
			}
			for sent := 0; sent < size; {
				k := min(len(pattern), size-sent)
				h.Write(pattern[:k])
				if chunked {
					rc.send(fmt.Sprintf("%x\r\n", k))
				}
				rc.send(string(pattern[:k]))
				if chunked {
					rc.send("\r\n")
				}
				sent += k
			}
			if chunked {
				rc.send("0\r\n\r\n")
			}
			resp := rc.response("POST")
			want := fmt.Sprintf("%d %x", size, h.Sum(nil))
			if b := body(t, resp); b != want {
				t.Fatalf("chunked=%v: backend got %q, want %q", chunked, b, want)
			}
		}
	})
	t.Run("download starts before it is all buffered", func(t *testing.T) {
		rc := dialProxy(t, p)
		rc.send("GET /big?n=" + strconv.Itoa(size) + " HTTP/1.1\r\nHost: h\r\n\r\n")
		resp := rc.response("GET")
		// Read slowly at first: the proxy must not buffer the whole body meanwhile.
		var before, during runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		first := make([]byte, 1<<20)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		runtime.ReadMemStats(&during)
		if grow := int64(during.HeapAlloc) - int64(before.HeapAlloc); grow > 16<<20 {
			t.Errorf("heap grew by %d MiB while a 64 MiB response waited on a slow reader", grow>>20)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n+int64(len(first)) != size {
			t.Fatalf("got %d bytes, %v", n+int64(len(first)), err)
		}
	})
}

func TestUploadMemoryStaysBounded(t *testing.T) {
	// The backend reads the first bytes of the body and answers from them at once, then
	// drains the rest; the client sees the answer before it has sent the whole body,
	// which is only possible when the proxy streams.
	firstSeen := make(chan struct{})
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 16)
		io.ReadFull(r.Body, buf)
		close(firstSeen)
		io.Copy(io.Discard, r.Body)
		w.Write(buf)
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000\r\n\r\nfirst-16-bytes!!")
	select {
	case <-firstSeen:
	case <-time.After(5 * time.Second):
		t.Fatal("backend did not see the first body bytes before the upload ended")
	}
}

// upgradeEchoBackend is testnet.UpgradeEcho as a Backend.
func upgradeEchoBackend(t *testing.T) *Backend {
	ln := testnet.UpgradeEcho(t, "127.0.0.2:0")
	return NewBackend(netip.MustParseAddrPort(ln.Addr().String()), BackendOptions{})
}

// echoThenClose sends two messages through an upgraded connection to the echo
// backend, checks each comes back, then closes the client's side and expects the end.
func echoThenClose(t *testing.T, rc *rawClient) {
	t.Helper()
	for _, msg := range []string{"ping", strings.Repeat("x", 100000)} {
		rc.send(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(rc.br, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
	}
	rc.c.(*net.TCPConn).CloseWrite()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.br.ReadByte(); err != io.EOF {
		t.Errorf("after half-close: %v, want EOF", err)
	}
}

// upgradeHalfCloseBackend answers an upgrade with 101, sends "bye" and half-closes
// its side at once, then reads the client's side to its end and hands what it read to
// the channel. Other requests get an empty 200 on a kept connection.
func upgradeHalfCloseBackend(t *testing.T) (*Backend, <-chan string) {
	got := make(chan string, 1)
	ln := testnet.ServeConns(t, "127.0.0.2:0", func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			if req.Header.Get("Upgrade") == "websocket" {
				break
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nbye")
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(r)
		got <- string(b)
	})
	return NewBackend(netip.MustParseAddrPort(ln.Addr().String()), BackendOptions{}), got
}

// halfCloseThenSend reads the backend's "bye" and the end of that direction, then
// sends on the other direction, still open, and checks that the backend got it.
func halfCloseThenSend(t *testing.T, rc *rawClient, got <-chan string) {
	t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(rc.br)
	if err != nil || string(b) != "bye" {
		t.Fatalf("from the backend: %q, %v; want \"bye\" and its end", b, err)
	}
	rc.send("late")
	rc.c.(*net.TCPConn).CloseWrite()
	select {
	case s := <-got:
		if s != "late" {
			t.Fatalf("the backend read %q after its half-close, want \"late\"", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend never saw the client's end")
	}
}

// A backend that half-closes an upgraded connection ends that direction only: the
// client sees the end and can still send (the proxy half-closes its side, as
// the backend did).
func TestUpgradeTunnelHalfClose(t *testing.T) {
	be, got := upgradeHalfCloseBackend(t)
	p := startProxy(t, &Config{Router: &testRouter{backends: []*Backend{be}}})
	rc := dialProxy(t, p)
	rc.send("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp := rc.response("GET"); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	halfCloseThenSend(t, rc, got)
}

func TestUpgradeTunnelEcho(t *testing.T) {
	tr := &testRouter{backends: []*Backend{upgradeEchoBackend(t)}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	resp := rc.response("GET")
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("status %d, Upgrade %q", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	echoThenClose(t, rc)
	d := tr.waitDone(t, 1)
	if len(d) != 1 || d[0].r.Status != 101 || d[0].r.ReqBytes < 100004 {
		t.Errorf("Done: %+v", d)
	}
}

func TestErrorResponses(t *testing.T) {
	slow := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond)
	}))
	// A backend that answers garbage.
	garbage, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	go func() {
		for {
			c, err := garbage.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Read(make([]byte, 4096))
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx")
				c.Close()
			}()
		}
	}()
	dead := netip.MustParseAddrPort(deadAddr(t, "127.0.0.4"))

	tests := []struct {
		name      string
		backends  []*Backend
		timeouts  Timeouts
		wantCode  int
		wantFails []Failure
	}{
		{"no backend", nil, Timeouts{}, 503, nil},
		{"connection refused", []*Backend{NewBackend(dead, BackendOptions{})}, Timeouts{}, 502, []Failure{FailConnect}},
		{"malformed response", []*Backend{NewBackend(netip.MustParseAddrPort(garbage.Addr().String()), BackendOptions{})}, Timeouts{}, 502, []Failure{FailProtocol}},
		{"response header timeout", []*Backend{backendFor(slow, "")}, Timeouts{BackendResponseHeader: 100 * time.Millisecond}, 504, []Failure{FailTimeout}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &testRouter{backends: tt.backends}
			p := startProxy(t, &Config{Router: tr, Timeouts: tt.timeouts, ConnectRetries: -1})
			rc := dialProxy(t, p)
			rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			resp := rc.response("GET")
			b := body(t, resp)
			if resp.StatusCode != tt.wantCode || !strings.HasPrefix(b, strconv.Itoa(tt.wantCode)) {
				t.Fatalf("status %d body %q, want %d", resp.StatusCode, b, tt.wantCode)
			}
			d := tr.waitDone(t, len(tt.wantFails))
			if len(d) != len(tt.wantFails) {
				t.Fatalf("Done called %d times, want %d", len(d), len(tt.wantFails))
			}
			for i, f := range tt.wantFails {
				if d[i].r.Failure != f || !d[i].r.Failed() {
					t.Errorf("Done %d: %+v, want failure %d", i, d[i].r, f)
				}
			}
		})
	}
}

// deadAddr returns an address on ip where nothing listens.
func deadAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestConnectFailureRetriesAnotherBackend(t *testing.T) {
	good := newTestBackend(t, "127.0.0.3", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "good")
	}))
	bad := NewBackend(netip.MustParseAddrPort(deadAddr(t, "127.0.0.2")), BackendOptions{Cookie: "bad"})
	ok := backendFor(good, "good")
	tr := &testRouter{backends: []*Backend{bad, ok}}
	tr.next.Store(1) // start with the dead one
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp := rc.response("GET")
	if b := body(t, resp); resp.StatusCode != 200 || b != "good" {
		t.Fatalf("client saw %d %q", resp.StatusCode, b)
	}
	d := tr.waitDone(t, 2)
	if len(d) != 2 || d[0].b != bad || d[0].r.Failure != FailConnect || d[1].b != ok || d[1].r.Status != 200 {
		t.Fatalf("Done calls: %+v", d)
	}
	if tr.routes[1].tried != bad {
		t.Errorf("second Route got tried=%v, want the dead backend", tr.routes[1].tried)
	}
}

func TestStalePooledConnectionRetried(t *testing.T) {
	// A backend that serves exactly one request per connection but claims keep-alive,
	// then closes: the pooled connection is dead when the next request takes it.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				n, _ := c.Read(buf)
				if n > 0 {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
				time.Sleep(20 * time.Millisecond)
			}()
		}
	}()
	b := NewBackend(netip.MustParseAddrPort(ln.Addr().String()), BackendOptions{})
	tr := &testRouter{backends: []*Backend{b}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	for i := 0; i < 3; i++ {
		rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		resp := rc.response("GET")
		if got := body(t, resp); resp.StatusCode != 200 || got != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
		time.Sleep(50 * time.Millisecond) // let the backend close the pooled connection
	}
	if accepts.Load() != 3 {
		t.Errorf("backend accepted %d connections, want 3", accepts.Load())
	}
	for _, d := range tr.waitDone(t, 3) {
		if d.r.Failed() {
			t.Errorf("a stale pooled connection counted as a backend failure: %+v", d.r)
		}
	}
}

func TestStickyCookie(t *testing.T) {
	a := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	b := newTestBackend(t, "127.0.0.3", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	tr := &testRouter{backends: []*Backend{backendFor(a, "ca"), backendFor(b, "cb")}}
	p := startProxy(t, &Config{Router: tr, StickyCookie: true})
	rc := dialProxy(t, p)

	rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp := rc.response("GET")
	first := body(t, resp)
	sc := resp.Header.Get("Set-Cookie")
	if sc != "NB_SRVID=c"+first+"; Path=/; HttpOnly" {
		t.Fatalf("Set-Cookie %q for a response from %q", sc, first)
	}
	cookie := "c" + first
	for i := 0; i < 4; i++ {
		rc.send("GET / HTTP/1.1\r\nHost: h\r\nCookie: other=1; NB_SRVID=" + cookie + "; x=y\r\n\r\n")
		resp := rc.response("GET")
		if got := body(t, resp); got != first || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("sticky request went to %q (Set-Cookie %q), want %q and no new cookie", got, resp.Header.Get("Set-Cookie"), first)
		}
	}
	if got := tr.routes[1].cookie; got != cookie {
		t.Errorf("Route got cookie %q, want %q", got, cookie)
	}
	// A cookie naming an unknown backend is replaced.
	rc.send("GET / HTTP/1.1\r\nHost: h\r\nCookie: NB_SRVID=gone\r\n\r\n")
	resp = rc.response("GET")
	if got := body(t, resp); resp.Header.Get("Set-Cookie") != "NB_SRVID=c"+got+"; Path=/; HttpOnly" {
		t.Errorf("Set-Cookie %q after a stale cookie", resp.Header.Get("Set-Cookie"))
	}
}

// An https listener's cookie is Secure, so browsers never send it back in clear. (The
// proxy does not terminate TLS itself: the Scheme is what the data plane tells it.)
func TestStickyCookieSecureOnHTTPS(t *testing.T) {
	a := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	tr := &testRouter{backends: []*Backend{backendFor(a, "ca")}}
	p := startProxy(t, &Config{Router: tr, StickyCookie: true, Scheme: "https"})
	rc := dialProxy(t, p)
	rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp := rc.response("GET")
	body(t, resp)
	if sc := resp.Header.Get("Set-Cookie"); sc != "NB_SRVID=ca; Path=/; HttpOnly; Secure" {
		t.Fatalf("Set-Cookie %q on https", sc)
	}
}

func TestBadRequestsRefused(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", echoHeaders())
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr, MaxHeaderBytes: 4096})
	tests := []struct {
		name, req string
		code      int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"double CL", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
		{"bad chunk", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"head too large", "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialProxy(t, p)
			rc.send(tt.req)
			resp := rc.response("GET")
			body(t, resp)
			if resp.StatusCode != tt.code || !resp.Close {
				t.Errorf("status %d close %v, want %d and close", resp.StatusCode, resp.Close, tt.code)
			}
			if !rc.closedByPeer() {
				t.Error("connection left open after a refused request")
			}
		})
	}
	if n := len(tr.done()); n != 0 {
		t.Errorf("%d refused requests reached a backend", n)
	}
}

func TestSlowHeaderGets408(t *testing.T) {
	tr := &testRouter{}
	p := startProxy(t, &Config{Router: tr, Timeouts: Timeouts{ClientHeader: 200 * time.Millisecond}})
	rc := dialProxy(t, p)
	rc.send("GET / HTTP/1.1\r\nHo")
	resp := rc.response("GET")
	body(t, resp)
	if resp.StatusCode != 408 {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
}

func TestIdleClientClosed(t *testing.T) {
	p := startProxy(t, &Config{Router: &testRouter{}, Timeouts: Timeouts{ClientIdle: 100 * time.Millisecond}})
	rc := dialProxy(t, p)
	// One request first: the wait for a connection's first request has the header
	// timeout (TestSilentConnectionGetsHeaderTimeout).
	rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	body(t, rc.response("GET"))
	start := time.Now()
	if !rc.closedByPeer() || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("idle connection not closed within the idle timeout")
	}
}

func TestGracefulStop(t *testing.T) {
	release := make(chan struct{})
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	idle := dialProxy(t, p)
	idle.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	body(t, idle.response("GET"))
	busy := dialProxy(t, p)
	busy.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(100 * time.Millisecond)

	p.cancel()
	if !idle.closedByPeer() {
		t.Error("idle keep-alive connection not closed on stop")
	}
	close(release)
	resp := busy.response("GET")
	if b := body(t, resp); b != "done" || !resp.Close {
		t.Errorf("in-flight request: %q, close %v; want it finished with Connection: close", b, resp.Close)
	}
}

func TestAccessLogHook(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	entries := make(chan AccessEntry, 4)
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr, LogRequestLine: true, AccessLog: func(e AccessEntry) { entries <- e }})
	rc := dialProxy(t, p)
	rc.send("GET /logged?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")
	body(t, rc.response("GET"))
	select {
	case e := <-entries:
		if e.Method != "GET" || e.Target != "/logged?q=1" || e.Status != 200 || e.Backend != tr.backends[0] || e.RespBytes == 0 {
			t.Errorf("entry %+v", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no access log entry")
	}
}

func TestErrorKeepsConnectionUsableAfterInlineBody(t *testing.T) {
	tr := &testRouter{} // no backends: 503
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	for i := 0; i < 2; i++ {
		rc.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
		resp := rc.response("POST")
		if b := body(t, resp); resp.StatusCode != 503 || resp.Close || b != "503 Service Unavailable\n" {
			t.Fatalf("request %d: %d close=%v %q", i, resp.StatusCode, resp.Close, b)
		}
	}
}

func TestEarlyResponseToUpload(t *testing.T) {
	// The backend refuses the upload from its head alone, as nginx does over
	// client_max_body_size, and closes.
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(413)
		io.WriteString(w, "too big")
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\n")
	go func() {
		chunk := make([]byte, 64<<10)
		for i := 0; i < 1500; i++ {
			if _, err := rc.c.Write(chunk); err != nil {
				return
			}
		}
	}()
	resp := rc.response("POST")
	if b := body(t, resp); resp.StatusCode != 413 || b != "too big" || !resp.Close {
		t.Fatalf("%d %q close=%v", resp.StatusCode, b, resp.Close)
	}
	d := tr.waitDone(t, 1)
	if len(d) != 1 || d[0].r.Status != 413 || d[0].r.Failed() {
		t.Errorf("Done %+v", d)
	}
}

func TestClientAbortIsNotBackendFailure(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", hashHandler())
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n" + strings.Repeat("x", 100000))
	time.Sleep(50 * time.Millisecond)
	rc.c.Close()
	d := tr.waitDone(t, 1)
	if len(d) != 1 || d[0].r.Failed() || d[0].r.Failure != FailClientAbort {
		t.Errorf("Done %+v, want one client abort not counted against the backend", d)
	}
}

func TestServerErrorsCountForPassiveHealth(t *testing.T) {
	codes := []int{500, 501, 502, 503, 505, 404, 200}
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Path[1:])
		w.WriteHeader(code)
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	for _, c := range codes {
		rc.send("GET /" + strconv.Itoa(c) + " HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp := rc.response("GET"); resp.StatusCode != c {
			t.Fatalf("status %d, want %d", resp.StatusCode, c)
		} else {
			body(t, resp)
		}
	}
	want := map[int]bool{500: true, 501: false, 502: true, 503: true, 505: false, 404: false, 200: false}
	for _, d := range tr.waitDone(t, len(codes)) {
		if d.r.Failed() != want[d.r.Status] {
			t.Errorf("status %d: Failed()=%v", d.r.Status, d.r.Failed())
		}
	}
}

func TestBadChunkedUploadBody(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", hashHandler())
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
	time.Sleep(50 * time.Millisecond)
	rc.send("cde\r\n5\nxx") // bare LF after the second size
	resp := rc.response("POST")
	body(t, resp)
	if resp.StatusCode != 400 || !rc.closedByPeer() {
		t.Errorf("status %d, want 400 and close", resp.StatusCode)
	}
	if d := tr.waitDone(t, 1); len(d) != 1 || d[0].r.Failed() {
		t.Errorf("Done %+v: a bad client body must not count against the backend", d)
	}
}

func TestStopClosesTunnel(t *testing.T) {
	tr := &testRouter{backends: []*Backend{upgradeEchoBackend(t)}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp := rc.response("GET"); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rc.send("x")
	if b, err := rc.br.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo: %q %v", b, err)
	}
	p.cancel()
	if !rc.closedByPeer() {
		t.Error("tunnel still open after stop")
	}
}

func TestStreamedUploadKeepsCookieAndLogFields(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", hashHandler())
	entries := make(chan AccessEntry, 4)
	tr := &testRouter{backends: []*Backend{backendFor(be, "srv-a")}}
	p := startProxy(t, &Config{Router: tr, StickyCookie: true, LogRequestLine: true, AccessLog: func(e AccessEntry) { entries <- e }})
	rc := dialProxy(t, p)
	const size = 1 << 20
	rc.send("POST /upload-target HTTP/1.1\r\nHost: h\r\nCookie: NB_SRVID=srv-a\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n")
	// Sent in pieces so that the buffer holding the head is overwritten by the body.
	piece := strings.Repeat("z", 16<<10)
	for sent := 0; sent < size; sent += len(piece) {
		rc.send(piece)
	}
	resp := rc.response("POST")
	if b := body(t, resp); !strings.HasPrefix(b, strconv.Itoa(size)+" ") || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("body %q, Set-Cookie %q", b, resp.Header.Get("Set-Cookie"))
	}
	select {
	case e := <-entries:
		if e.Method != "POST" || e.Target != "/upload-target" || e.ReqBytes < size {
			t.Errorf("entry %+v", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no access log entry")
	}
}

// TestAbsoluteFormTarget: an absolute-form request target is forwarded in origin form
// with Host replaced by the target's authority (RFC 9112 section 3.2.2: the Host
// received is ignored), so the backend sees one host, the one in the target.
func TestAbsoluteFormTarget(t *testing.T) {
	// A raw backend that echoes the request line and Host (net/http's server would
	// answer "OPTIONS *" itself).
	ln := testnet.ServeConns(t, "127.0.0.2:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			echo := fmt.Sprintf("%s %s %s\nHost: %s\n", req.Method, req.RequestURI, req.Proto, req.Host)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(echo), echo)
		}
	})
	be := &testBackend{addr: netip.MustParseAddrPort(ln.Addr().String())}
	tests := []struct {
		name, request string
		status        int
		want          []string
	}{
		{"path and query", "GET http://other.example/x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n", 200,
			[]string{"GET /x?y=1 HTTP/1.1", "Host: other.example"}},
		{"https scheme, case kept", "GET HTTPS://Other.Example:8443/a HTTP/1.1\r\nHost: t\r\n\r\n", 200,
			[]string{"GET /a HTTP/1.1", "Host: Other.Example:8443"}},
		{"empty path", "GET http://other.example HTTP/1.1\r\nHost: t\r\n\r\n", 200,
			[]string{"GET / HTTP/1.1", "Host: other.example"}},
		{"query without path", "GET http://other.example?q HTTP/1.1\r\nHost: t\r\n\r\n", 200,
			[]string{"GET /?q HTTP/1.1", "Host: other.example"}},
		{"OPTIONS of the server", "OPTIONS http://other.example HTTP/1.1\r\nHost: t\r\n\r\n", 200,
			[]string{"OPTIONS * HTTP/1.1", "Host: other.example"}},
		{"IPv6 authority", "GET http://[::1]:80/ HTTP/1.1\r\nHost: t\r\n\r\n", 200,
			[]string{"GET / HTTP/1.1", "Host: [::1]:80"}},
		{"HTTP/1.0 without Host", "GET http://other.example/x HTTP/1.0\r\n\r\n", 200,
			[]string{"GET /x HTTP/1.1", "Host: other.example"}},
		{"userinfo refused", "GET http://user@other.example/ HTTP/1.1\r\nHost: t\r\n\r\n", 400, nil},
		{"empty authority refused", "GET http:///x HTTP/1.1\r\nHost: t\r\n\r\n", 400, nil},
		{"Host still required in HTTP/1.1", "GET http://other.example/ HTTP/1.1\r\n\r\n", 400, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
			p := startProxy(t, &Config{Router: tr})
			rc := dialProxy(t, p)
			rc.send(tc.request)
			method, _, _ := strings.Cut(tc.request, " ")
			resp := rc.response(method)
			got := body(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%q)", resp.StatusCode, tc.status, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w+"\n") {
					t.Errorf("backend saw:\n%s\nwant the line %q", got, w)
				}
			}
			if strings.Contains(got, "Host: t\n") {
				t.Errorf("the Host received was forwarded:\n%s", got)
			}
		})
	}
}
