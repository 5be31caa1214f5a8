package httpproxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A client's read buffer starts small and grows to the head limit only for a head that
// needs it: thousands of clients with a request in flight each hold one. A pooled
// buffer that grew serves the next connection as it is, if it fits that one's limit.
// (The checks are on fitReadBuffer, not on a buffer from the shared pool: another
// test's connection may have left a grown one there.)
func TestReadBufferStartsSmall(t *testing.T) {
	grown := make([]byte, DefaultMaxHeaderBytes)
	for _, c := range []struct {
		name string
		buf  []byte
		max  int
		want int
		same bool
	}{
		{"none", nil, DefaultMaxHeaderBytes, initialReadBuffer, false},
		{"grown, fits", grown, DefaultMaxHeaderBytes, DefaultMaxHeaderBytes, true},
		{"grown, over a smaller limit", grown, 8 << 10, initialReadBuffer, false},
		{"limit below the initial size", nil, 1024, 1024, false},
		{"initial size, limit below it", make([]byte, initialReadBuffer), 1024, 1024, false},
		{"smaller than a new one", make([]byte, 1024), DefaultMaxHeaderBytes, initialReadBuffer, false},
	} {
		got := fitReadBuffer(c.buf, c.max)
		if len(got) != c.want || (len(got) > 0 && len(c.buf) > 0 && &got[0] == &c.buf[0]) != c.same {
			t.Errorf("%s: %d bytes (same buffer: %v); want %d (same: %v)", c.name, len(got),
				len(c.buf) > 0 && &got[0] == &c.buf[0], c.want, c.same)
		}
	}
	cc := &clientConn{}
	cc.takeBuffers(DefaultMaxHeaderBytes)
	if n := len(cc.r.buf); cc.r.max != DefaultMaxHeaderBytes || n < initialReadBuffer || n > DefaultMaxHeaderBytes {
		t.Fatalf("takeBuffers: read buffer %d bytes, max %d; want %d..%d, max %d", n, cc.r.max,
			initialReadBuffer, DefaultMaxHeaderBytes, DefaultMaxHeaderBytes)
	}
	cc.shedBuffers()
	cc.takeBuffers(1024)
	if len(cc.r.buf) != 1024 {
		t.Fatalf("takeBuffers: read buffer %d bytes for a 1024-byte limit", len(cc.r.buf))
	}
}

// fill and rawFill grow a full buffer to max, keep what it held, and report a full
// buffer only at max.
func TestReadBufferGrows(t *testing.T) {
	for _, raw := range []bool{false, true} {
		a, b := tcpPair(t)
		head := strings.Repeat("x", 10000)
		go a.Write([]byte(head))
		cr := connReader{conn: b, buf: make([]byte, 4096), max: 12000}
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		rc, _ := b.(*net.TCPConn).SyscallConn()
		for cr.n() < len(head) {
			var err error
			if raw {
				room := cr.room()
				var n int
				rc.Read(func(fd uintptr) bool {
					n, err = cr.rawFill(int(fd))
					return err != syscall.EAGAIN
				})
				if err == nil && n > room {
					t.Fatalf("rawFill read %d bytes, more than room() said (%d)", n, room)
				}
			} else {
				_, err = cr.fill()
			}
			if err != nil {
				t.Fatalf("raw %v: fill after %d bytes: %v", raw, cr.n(), err)
			}
		}
		if got := string(cr.buffered()); got != head || len(cr.buf) != 12000 {
			t.Fatalf("raw %v: buffer %d bytes holding %d; want 12000 holding the head", raw, len(cr.buf), len(got))
		}
		go a.Write([]byte(strings.Repeat("y", 3000)))
		for cr.w < len(cr.buf) {
			if _, err := cr.fill(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cr.fill(); err != errBufferFull {
			t.Fatalf("raw %v: a full buffer at max: %v, want errBufferFull", raw, err)
		}
	}
}

// A head longer than the initial buffer, under the limit, is served on both paths;
// one over the limit still gets 431.
func TestLongHeadGrowsBuffer(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", echoHeaders())
	for _, blocking := range []bool{false, true} {
		tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
		cfg := &Config{Router: tr, MaxHeaderBytes: 12000}
		p := startProxy(t, cfg)
		if blocking {
			p = startProxyBlocking(t, cfg)
		}
		long := strings.Repeat("v", 9000)
		rc := dialProxy(t, p)
		// Twice on one connection: in one write, then in two.
		rc.send("GET / HTTP/1.1\r\nHost: h\r\nX-Custom: " + long + "\r\n\r\n")
		resp := rc.response("GET")
		if got := body(t, resp); resp.StatusCode != 200 || !strings.Contains(got, "X-Custom: "+long) {
			t.Fatalf("blocking %v: status %d, custom header relayed: %v", blocking, resp.StatusCode, strings.Contains(got, long))
		}
		rc.send("GET / HTTP/1.1\r\nHost: h\r\nX-Custom: " + long[:5000])
		time.Sleep(20 * time.Millisecond)
		rc.send(long[5000:] + "\r\n\r\n")
		resp = rc.response("GET")
		if got := body(t, resp); resp.StatusCode != 200 || !strings.Contains(got, "X-Custom: "+long) {
			t.Fatalf("blocking %v, head in two writes: status %d", blocking, resp.StatusCode)
		}
		rc.send("GET / HTTP/1.1\r\nHost: h\r\nX-Custom: " + strings.Repeat("w", 12000) + "\r\n\r\n")
		resp = rc.response("GET")
		body(t, resp)
		if resp.StatusCode != 431 {
			t.Fatalf("blocking %v: head over the limit: status %d, want 431", blocking, resp.StatusCode)
		}
	}
}

// A read that fills the buffer whole (a body streaming through) grows it to max, so
// the rest moves in bigger reads.
func TestReadBufferGrowsForBodies(t *testing.T) {
	a, b := tcpPair(t)
	go a.Write(make([]byte, 256<<10))
	cr := connReader{conn: b, buf: make([]byte, initialReadBuffer), max: 32 << 10}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := 0
	for got < 256<<10 && len(cr.buf) < cr.max {
		n, err := cr.fill()
		if err != nil {
			t.Fatal(err)
		}
		got += n
		cr.consume(cr.n())
	}
	if len(cr.buf) != cr.max {
		t.Fatalf("buffer still %d bytes after %d bytes streamed through", len(cr.buf), got)
	}
}

// A response head longer than a backend buffer's first 4 KiB is relayed whole, and so
// is a body much larger than the buffer.
func TestLongResponseHeadAndBody(t *testing.T) {
	long := strings.Repeat("r", 9000)
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Long", long)
		io.WriteString(w, big)
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	for i := range 2 { // the second on a pooled backend connection
		rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		resp := rc.response("GET")
		if got := body(t, resp); resp.StatusCode != 200 || resp.Header.Get("X-Long") != long || got != big {
			t.Fatalf("request %d: status %d, long header relayed %v, body %d bytes intact %v", i, resp.StatusCode,
				resp.Header.Get("X-Long") == long, len(got), got == big)
		}
	}
}
