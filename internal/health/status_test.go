package health

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

func TestParseStatusLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		code int
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, true},
		{"HTTP/1.0 302 Found\r\n", 302, true},
		{"HTTP/1.1 204\r\n", 204, true},
		{"HTTP/1.1 100 Continue\r\n", 100, true},
		{"HTTP/2 200\r\n", 0, false},
		{"HTTP/1.1 20 OK\r\n", 0, false},
		{"HTTP/1.1 2000 OK\r\n", 0, false},
		{"HTTP/1.1 099 x\r\n", 0, false},
		{"SSH-2.0-OpenSSH\r\n", 0, false},
	} {
		code, ok := parseStatusLine([]byte(tc.line))
		if code != tc.code || ok != tc.ok {
			t.Errorf("%q: %d %v, want %d %v", tc.line, code, ok, tc.code, tc.ok)
		}
	}
}

// rawServer answers every connection with answer after reading the request head,
// and records the request.
func rawServer(t *testing.T, addr, answer string) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	reqs := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				r := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := r.ReadString('\n')
					head.WriteString(line)
					if err != nil || line == "\r\n" {
						break
					}
				}
				reqs <- head.String()
				io.WriteString(c, answer)
			}()
		}
	}()
	return l.Addr().String(), reqs
}

func TestHTTPCheckReadsTheStatusLineOnly(t *testing.T) {
	t.Parallel()
	c := New(Options{Logger: quiet})
	spec := Spec{Check: model.CheckHTTP, Path: "/health?x=1", Timeout: time.Second}
	for _, tc := range []struct {
		answer string
		pass   bool
	}{
		{"HTTP/1.1 204 No Content\r\n\r\n", true},
		{"HTTP/1.1 100 Continue\r\nX: y\r\n\r\nHTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n", true},
		{"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy", false},
		{"hello\r\n", false},
		{"", false},
	} {
		addr, reqs := rawServer(t, "127.0.41.13:0", tc.answer)
		err := probeOnce(c, addr, spec)
		if (err == nil) != tc.pass {
			t.Errorf("answer %q: err %v, want pass %v", tc.answer, err, tc.pass)
		}
		req := <-reqs
		for _, want := range []string{"GET /health?x=1 HTTP/1.1\r\n", "\r\nHost: " + addr + "\r\n", "\r\nUser-Agent: " + UserAgent + "\r\n", "\r\nConnection: close\r\n"} {
			if !strings.Contains(req, want) {
				t.Errorf("request %q lacks %q", req, want)
			}
		}
	}
}

func TestEngineChecksFromTheSourceAddressAndTimesOut(t *testing.T) {
	t.Parallel()
	src := netip.MustParseAddr("127.0.41.98")
	c := runChecker(t, Options{Source: src})
	b := newBackend(t, "127.0.41.14")
	spec := Spec{Check: model.CheckHTTP, Interval: 300 * time.Millisecond, Timeout: 200 * time.Millisecond, Attempts: 1}
	c.Set(1, spec, []model.Node{node(1, b.addr)})
	waitStatus(t, c, 1, model.StatusUp, initialDelayMax(spec.Interval)+slack)
	c.mu.RLock()
	e := c.engine
	c.mu.RUnlock()
	if e == nil && runtime.GOOS == "linux" {
		t.Fatal("no check engine on Linux")
	}
	if host, _, _ := net.SplitHostPort(b.lastRequest().RemoteAddr); host != src.String() {
		t.Fatalf("check came from %s, want %s", host, src)
	}
	// A node that accepts and never answers fails by its timeout.
	b.delay.Store(int64(time.Second))
	waitStatus(t, c, 1, model.StatusDown, downBound(spec))
	b.delay.Store(0)
	waitStatus(t, c, 1, model.StatusUp, upBound(spec)+spec.Timeout)
	// A closed port fails a connection check at once.
	l, _ := net.Listen("tcp", "127.0.41.14:0")
	closed := l.Addr().String()
	l.Close()
	c.Set(2, Spec{Check: model.CheckConnection, Interval: 300 * time.Millisecond, Timeout: 200 * time.Millisecond, Attempts: 1},
		[]model.Node{node(2, closed)})
	waitStatus(t, c, 2, model.StatusDown, downBound(spec))
	if st, _ := c.NodeStats(2); !strings.Contains(st.LastError, "refused") {
		t.Fatalf("last error %q, want connection refused", st.LastError)
	}
}
