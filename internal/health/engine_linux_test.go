package health

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// engineOf returns the engine of c once Run has started, failing the test
// without one.
func engineOf(t *testing.T, c *Checker) *engine {
	t.Helper()
	for range 1000 {
		c.mu.RLock()
		started, e := c.runCtx != nil, c.engine
		c.mu.RUnlock()
		if started {
			if e == nil {
				t.Fatal("no check engine on Linux")
			}
			return e
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("Run did not start")
	return nil
}

func TestEngineChecksIPv6Nodes(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	closed, _ := net.Listen("tcp", "[::1]:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	c := runChecker(t, Options{})
	engineOf(t, c)
	spec := Spec{Check: model.CheckConnection, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, Attempts: 1}
	c.Set(1, spec, []model.Node{node(1, l.Addr().String()), node(2, closedAddr)})
	spec.Check = model.CheckHTTP
	c.Set(2, spec, []model.Node{node(3, l.Addr().String())})
	spec.Path = "/down"
	c.Set(3, spec, []model.Node{node(4, l.Addr().String())})
	waitStatus(t, c, 1, model.StatusUp, downBound(spec))
	waitStatus(t, c, 2, model.StatusDown, downBound(spec))
	waitStatus(t, c, 3, model.StatusUp, downBound(spec))
	waitStatus(t, c, 4, model.StatusDown, downBound(spec))
	if st, _ := c.NodeStats(2); !strings.Contains(st.LastError, "refused") {
		t.Errorf("closed IPv6 port: last error %q, want connection refused", st.LastError)
	}
	if st, _ := c.NodeStats(4); !strings.Contains(st.LastError, "status 503") {
		t.Errorf("IPv6 node answering 503: last error %q", st.LastError)
	}
}

// A connection check is answered by the node's kernel: it ends with a reset before
// the node has a connection for its application to accept (TCP_QUICKACK off, as
// HAProxy's), so the application sees nothing.
func TestConnectionCheckLeavesNoConnectionForTheApplication(t *testing.T) {
	t.Parallel()
	var accepted atomic.Int64
	l := serveCounting(t, "127.0.41.15:0", &accepted)
	c := runChecker(t, Options{})
	engineOf(t, c)
	spec := Spec{Check: model.CheckConnection, Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Attempts: 1}
	c.Set(1, spec, []model.Node{node(1, l.Addr().String())})
	waitStatus(t, c, 1, model.StatusUp, time.Second)
	time.Sleep(time.Second)
	st, _ := c.NodeStats(1)
	t.Logf("%d checks, %d failed; the node's application accepted %d connections", st.Checks, st.CheckFailures, accepted.Load())
	if st.Checks < 10 || st.CheckFailures != 0 {
		t.Fatalf("%d checks with %d failures in over a second", st.Checks, st.CheckFailures)
	}
	// A busy machine may delay a check past the delayed-ACK timer (40 ms), which
	// then completes the handshake: a few may get through, most must not.
	if a := accepted.Load(); a > int64(st.Checks)/2 {
		t.Fatalf("the application accepted %d connections for %d connection checks", a, st.Checks)
	}
}

// serveCounting listens on addr and accepts (and closes) connections, counting them.
func serveCounting(t *testing.T, addr string, n *atomic.Int64) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			conn.Close()
		}
	}()
	return l
}

// An engine with nothing to check does not wake up: no timer runs while no check
// is scheduled or in flight.
func TestIdleEngineSleeps(t *testing.T) {
	t.Parallel()
	c := runChecker(t, Options{})
	c.Set(1, Spec{Check: model.CheckNone, Passive: true}, nodesOf(5000, 100))
	e := engineOf(t, c)
	time.Sleep(100 * time.Millisecond)
	before := e.passes.Load()
	time.Sleep(1500 * time.Millisecond)
	if n := e.passes.Load() - before; n > 0 {
		t.Fatalf("the engine woke %d times in 1.5 s with nothing to check", n)
	}
	// It still wakes for a node added now.
	b := newBackend(t, "127.0.41.16")
	c.Set(2, Spec{Check: model.CheckHTTP, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: 1}, []model.Node{node(1, b.addr)})
	waitStatus(t, c, 1, model.StatusUp, initialDelayMax(time.Second)+slack)
}

// rawHTTPNode answers every connection on a loopback port with a fixed 200 using
// system calls only, so that it allocates nothing while a test counts allocations.
func rawHTTPNode(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr(ip).As4()
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: a}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	port := sa.(*syscall.SockaddrInet4).Port
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf [1024]byte
		for {
			r, _, errno := syscall.Syscall6(syscall.SYS_ACCEPT4, uintptr(fd), 0, 0, syscall.SOCK_CLOEXEC, 0, 0)
			if errno == syscall.EINTR || errno == syscall.ECONNABORTED {
				continue
			}
			if errno != 0 {
				return
			}
			conn := int(r)
			syscall.Read(conn, buf[:])
			syscall.Write(conn, answer)
			syscall.Close(conn)
		}
	}()
	t.Cleanup(func() {
		syscall.Shutdown(fd, syscall.SHUT_RDWR) // wakes the accept
		<-done
		syscall.Close(fd)
	})
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}

// A check run by the engine allocates nothing: its op, buffers and request are
// reused, and its system calls take their arguments from the stack.
func TestEngineCheckDoesNotAllocate(t *testing.T) {
	httpNode := rawHTTPNode(t, "127.0.41.17")
	l, err := net.Listen("tcp", "127.0.41.17:0") // connection checks: never accepted
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		check model.Check
		addr  netip.AddrPort
	}{
		{model.CheckConnection, l.Addr().(*net.TCPAddr).AddrPort()},
		{model.CheckHTTP, httpNode},
	} {
		c := New(Options{Logger: quiet})
		e := newEngine(c, netip.Addr{})
		if e == nil {
			t.Fatal("no check engine on Linux")
		}
		n := c.Set(1, Spec{Check: tc.check, Interval: time.Second, Timeout: time.Second, Attempts: 1}, []model.Node{node(1, tc.addr.String())})[0]
		n.mu.Lock()
		n.spec, n.base = c.configs[1].spec, time.Now()
		n.mu.Unlock()
		check := func() {
			e.begin(due{n: n, gen: n.gen}, time.Now())
			for len(e.flight) > 0 {
				if !e.harvest(uintptr(e.epfd)) {
					runtime.Gosched() // the node's goroutine answers
				}
			}
			c.schedMu.Lock()
			for len(c.heap) > 0 {
				c.heap.pop()
			}
			c.schedMu.Unlock()
		}
		check() // the first result changes the node's status, which is logged
		if allocs := testing.AllocsPerRun(200, check); allocs > 0 {
			t.Errorf("%s check: %.1f allocations per check", tc.check, allocs)
		}
		if st := n.Stats(); st.CheckFailures != 0 || n.Status() != model.StatusUp {
			t.Errorf("%s check: %d of %d failed (%s), status %s", tc.check, st.CheckFailures, st.Checks, st.LastError, n.Status())
		}
		e.close()
	}
}
