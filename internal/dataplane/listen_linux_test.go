package dataplane

import (
	"net"
	"os"
	"net/netip"
	"syscall"
	"testing"
)

// Accepted client connections keep TCP keep-alive (15 s idle, 15 s interval, 9 probes)
// although it is set once on the listening socket.
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
	rc, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
		{"TCP_NODELAY", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	} {
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
