//go:build linux

package dataplane

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// rawClient is a blocking client socket of the test's own, outside Go's net package, so
// that holding many costs the test's heap nothing.
type rawClient int

func dialRaw(t *testing.T, to netip.AddrPort) rawClient {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tv := syscall.Timeval{Sec: 5}
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	sa := &syscall.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())}
	// The runtime's preemption signal interrupts these system calls (a socket with a
	// timeout is not restarted): an interrupted connect goes on in the background.
	err = syscall.Connect(fd, sa)
	for deadline := time.Now().Add(5 * time.Second); (err == syscall.EINTR || err == syscall.EALREADY) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		err = syscall.Connect(fd, sa)
	}
	if err != nil && err != syscall.EISCONN {
		t.Fatal(err)
	}
	return rawClient(fd)
}

// get sends a GET and reads the whole answer, which must be 200 with body want.
func (c rawClient) get(t *testing.T, want string) {
	t.Helper()
	_, err := syscall.Write(int(c), []byte("GET / HTTP/1.1\r\nHost: raw.test\r\n\r\n"))
	for err == syscall.EINTR { // nothing was written (the request fits the socket's buffer)
		_, err = syscall.Write(int(c), []byte("GET / HTTP/1.1\r\nHost: raw.test\r\n\r\n"))
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 1024)
	for {
		n, err := syscall.Read(int(c), buf)
		if err == syscall.EINTR {
			continue // see dialRaw
		}
		if n <= 0 {
			t.Fatalf("read after %q: %d, %v", got, n, err)
		}
		got = append(got, buf[:n]...)
		if i := bytes.Index(got, []byte("\r\n\r\n")); i >= 0 && bytes.HasSuffix(got, []byte(want)) {
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 200 ")) {
				t.Fatalf("answer %q", got)
			}
			return
		}
	}
}

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestIdleHTTPConnectionsHoldOnlyTheirParkConn: plain http clients are accepted raw
// and, idle after a request, hold no goroutine and next to no heap: no Go socket
// (netFD, TCPConn, addresses: ~310 B of heap, and the runtime's pollDesc off it), only
// the parkConn (112 B) and their poller's table slot. Each still serves its next
// request, and its socket has TCP_NODELAY (inherited from the listening socket, where
// Go set it on each accepted one).
func TestIdleHTTPConnectionsHoldOnlyTheirParkConn(t *testing.T) {
	e := newEnv(t, "127.0.64.0/24")
	nameServer(t, "127.0.65.2:9011", "web")
	nb := e.create(config(model.ProtocolHTTP, 80, node("web", "127.0.65.2:9011", 50)))
	e.settle(1)
	front := netip.MustParseAddrPort(nb.IPv4 + ":80")

	// Warm up: pools, poller tables, the backend's idle connections.
	const warm, n = 200, 1000
	for range warm {
		c := dialRaw(t, front)
		c.get(t, "web")
		syscall.Close(int(c))
	}
	waitFor(t, 2*time.Second, "the warm-up connections to close", func() bool { return e.plane.active.Load() == 0 })
	time.Sleep(100 * time.Millisecond)
	g0, h0 := runtime.NumGoroutine(), heapAfterGC()
	cs := make([]rawClient, n)
	t.Cleanup(func() {
		for _, c := range cs {
			if c > 0 {
				syscall.Close(int(c))
			}
		}
	})
	for i := range cs {
		cs[i] = dialRaw(t, front)
		cs[i].get(t, "web")
	}
	time.Sleep(200 * time.Millisecond) // every one parked
	h1, g1 := heapAfterGC(), runtime.NumGoroutine()
	if p := os.Getenv("NB_HEAPPROFILE"); p != "" {
		f, _ := os.Create(p)
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	perConn := (int64(h1) - int64(h0)) / n
	t.Logf("%d idle connections: %d B of heap each, %d goroutines more", n, perConn, g1-g0)
	if perConn > 300 {
		t.Errorf("%d B of heap per idle connection; want at most 300 (a Go socket alone is ~310)", perConn)
	}
	if g1-g0 > n/10 {
		t.Errorf("%d goroutines more with %d idle connections", g1-g0, n)
	}
	if a := e.plane.active.Load(); a != n {
		t.Errorf("active %d, want %d", a, n)
	}

	// The accepted sockets: find them among the process's descriptors.
	seen := 0
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, d := range ents {
		fd, _ := strconv.Atoi(d.Name())
		sa, err := unix.Getsockname(fd)
		in4, ok := sa.(*unix.SockaddrInet4)
		if err != nil || !ok || in4.Addr != front.Addr().As4() || in4.Port != int(front.Port()) {
			continue
		}
		if acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); acc == 1 {
			continue // the listening socket
		}
		seen++
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v != 1 {
			t.Fatalf("accepted socket %d: TCP_NODELAY %d (%v); want 1", fd, v, err)
		}
	}
	if seen < n {
		t.Errorf("found %d accepted sockets, want %d", seen, n)
	}

	for _, c := range cs {
		c.get(t, "web")
	}
}

// TestHTTPWithoutParkingAcceptsThroughGo: with --http-park=false the listening sockets
// stay Go's and clients are served as net.Conns, keep-alive included.
func TestHTTPWithoutParkingAcceptsThroughGo(t *testing.T) {
	e := newEnv(t, "127.0.64.0/24", func(o *Options) { o.NoHTTPPark = true })
	nameServer(t, "127.0.65.2:9011", "web")
	nb := e.create(config(model.ProtocolHTTP, 80, node("web", "127.0.65.2:9011", 50)))
	e.plane.mu.Lock()
	l := e.plane.listeners[1]
	raw, parking := l.raw, l.http.Parking()
	e.plane.mu.Unlock()
	if raw != nil || parking {
		t.Fatalf("raw sockets %v, parking %v with NoHTTPPark", raw, parking)
	}
	c := dialRaw(t, netip.MustParseAddrPort(nb.IPv4+":80"))
	defer syscall.Close(int(c))
	c.get(t, "web")
	c.get(t, "web")
}

// TestHTTPThrottleOnRawAccept: the per-client throttle applies to plain http clients
// accepted raw as to every other: over 3/s a client's connection is reset before any
// byte and counted refused; other clients are not held back.
func TestHTTPThrottleOnRawAccept(t *testing.T) {
	e := newEnv(t, "127.0.66.0/24")
	nameServer(t, "127.0.67.2:9011", "web")
	nb, err := e.db.CreateNodeBalancer(model.NodeBalancer{Region: "local", ClientConnThrottle: 3},
		[]model.ConfigWithNodes{config(model.ProtocolHTTP, 80, node("web", "127.0.67.2:9011", 50))})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "listener", func() bool { return len(e.plane.Listening()) == 1 })
	e.plane.mu.Lock()
	raw := e.plane.listeners[1].raw
	e.plane.mu.Unlock()
	if raw == nil {
		t.Fatal("the http listener is not accepted raw")
	}
	try := func(src net.IP) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
		c, err := d.Dial("tcp", nb.IPv4+":80")
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		return strings.HasSuffix(string(b), "web")
	}
	refused := e.plane.opts.Stats.Config(1).Refused.Load()
	a := net.IPv4(127, 0, 99, 1)
	ok := 0
	for range 6 {
		if try(a) {
			ok++
		}
	}
	if ok != 3 {
		t.Fatalf("throttle 3/s let %d of 6 quick connections through", ok)
	}
	if got := e.plane.opts.Stats.Config(1).Refused.Load() - refused; got != 3 {
		t.Errorf("refused grew by %d, want 3", got)
	}
	if !try(net.IPv4(127, 0, 99, 2)) {
		t.Fatal("another client address must not be throttled")
	}
}
