package dataplane

import (
	"cmp"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenConfig sets TCP keep-alive (Go's defaults: probes after 15 s idle, every 15 s,
// 9 of them) once on the listening socket, whose accepted sockets inherit it, instead
// of with four system calls on every accepted connection. With freebind the socket
// may bind an address this host does not hold yet (IP_FREEBIND, IPV6_FREEBIND): a
// host of a cluster with --frontend-interface listens on every frontend address
// before it holds them, so it serves the moment it takes them over.
func listenConfig(freebind bool) net.ListenConfig {
	return net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range [...]struct{ level, opt, v int }{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
			} {
				if e := syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); e != nil && serr == nil {
					serr = e
				}
			}
			if freebind {
				// IP_FREEBIND covers IPv4 sockets; IPV6_FREEBIND IPv6 ones (an
				// IPv4 socket refuses it, which is fine). IP_TRANSPARENT, inherited
				// by accepted sockets, lets a host that handed the address over go
				// on sending the answers of requests in flight from it (it needs
				// CAP_NET_ADMIN, which --frontend-interface needs anyway; without
				// it those answers are lost, nothing else changes). Nothing is
				// redirected to these sockets: that would take TPROXY rules.
				if e := syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1); e != nil && serr == nil {
					serr = e
				}
				syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)
				syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
			}
		})
		return cmp.Or(err, serr)
	}}
}
