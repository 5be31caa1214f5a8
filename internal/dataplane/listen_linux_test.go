package dataplane

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// Accepted client connections keep TCP keep-alive (60 s idle, 10 s interval, 6 probes:
// a dead client is found within 120 s) although it is set once on the listening socket.
func TestAcceptedConnectionsInheritKeepAlive(t *testing.T) {
	ln, err := listen(netip.MustParseAddrPort("127.0.83.9:0"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkKeepAlive(t, s, true)
}

// Connections to nodes of tcp sessions that last get the same keep-alive: a node
// that vanishes is found within 120 s too.
func TestNodeConnectionsGetKeepAlive(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 83, 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, _ := tcpPair(t, ln)
	keepAliveLater(c, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	checkKeepAlive(t, c, false)
	if keepAliveAfter >= time.Duration(keepIdle)*time.Second {
		t.Errorf("keepAliveAfter %v must stay below the keep-alive idle time (%d s)", keepAliveAfter, keepIdle)
	}
}

// checkKeepAlive checks the keep-alive options of c (and TCP_NODELAY, which Go sets).
func checkKeepAlive(t *testing.T, c *net.TCPConn, nodelay bool) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 60},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 10},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 6},
		{"TCP_NODELAY", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	} {
		if o.opt == syscall.TCP_NODELAY && !nodelay {
			continue
		}
		var v int
		var gerr error
		rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), o.level, o.opt) })
		if gerr != nil || v != o.want {
			t.Errorf("%s = %d (%v), want %d", o.name, v, gerr, o.want)
		}
	}
}

// With freebind a listener binds an address no interface holds (198.18.0.0/15 is
// for benchmarks, never routed here); without it the bind fails as on a single host.
func TestFreeBindListensBeforeHolding(t *testing.T) {
	addr := netip.MustParseAddrPort("198.19.255.254:0")
	if ln, err := listen(addr, false); err == nil {
		ln.Close()
		t.Skip("198.19.255.254 is local here; cannot test freebind")
	}
	ln, err := listen(addr, true)
	if err != nil {
		t.Fatalf("freebind listen: %v", err)
	}
	defer ln.Close()
	if os.Geteuid() != 0 {
		return // IP_TRANSPARENT needs CAP_NET_ADMIN
	}
	rc, _ := ln.SyscallConn()
	var v int
	var gerr error
	rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT) })
	if gerr != nil || v != 1 {
		t.Errorf("IP_TRANSPARENT = %d (%v), want 1: a host that handed the address over could not finish its answers", v, gerr)
	}
}

// BenchmarkKeepAliveOptions is what keep-alive costs each connection to a node: the
// four setsockopt calls of setKeepAlive.
func BenchmarkKeepAliveOptions(b *testing.B) {
	b.ReportAllocs()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Close(fd)
	for range b.N {
		if err := setKeepAlive(fd); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTCPSessionNodeConnectionGetsKeepAlive: through a real session, the balancer's
// socket towards the node has keep-alive once the session has lasted keepAliveAfter.
func TestTCPSessionNodeConnectionGetsKeepAlive(t *testing.T) {
	saved := keepAliveAfter
	keepAliveAfter = 50 * time.Millisecond
	t.Cleanup(func() { keepAliveAfter = saved })
	e := newEnv(t, "127.0.64.0/24")
	echo := testnet.ServeConns(t, "127.0.65.2:0", func(c net.Conn) { io.Copy(c, c) })
	nb := e.create(config(model.ProtocolTCP, 9000, node("echo", echo.Addr().String(), 50)))
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	fd := socketTo(t, echo.Addr().(*net.TCPAddr))
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepIdle},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepInterval},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepCount},
	} {
		if v, err := syscall.GetsockoptInt(fd, o.level, o.opt); err != nil || v != o.want {
			t.Errorf("%s = %d (%v), want %d", o.name, v, err, o.want)
		}
	}
}

// socketTo finds this process's descriptor of the socket connected to peer.
func socketTo(t *testing.T, peer *net.TCPAddr) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := syscall.Getpeername(fd)
		if a, ok := sa.(*syscall.SockaddrInet4); err == nil && ok && a.Port == peer.Port && net.IP(a.Addr[:]).Equal(peer.IP) {
			return fd
		}
	}
	t.Fatalf("no socket connected to %v", peer)
	return -1
}
