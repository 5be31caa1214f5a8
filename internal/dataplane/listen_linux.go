package dataplane

import (
	"cmp"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP keep-alive on both sides of every session: a peer that vanishes without a word
// (a crashed host, a cut link) is declared dead after keepIdle + keepCount ×
// keepInterval = 60 + 6 × 10 = 120 s without traffic, and the session ends. Probes
// start after a minute of silence, so busy and briefly idle connections never send one.
// Client sockets inherit it from the listening socket; connections to nodes get it
// from keepAliveLater.
var (
	keepIdle     = 60 // seconds of silence before the first probe
	keepInterval = 10 // seconds between unanswered probes
	keepCount    = 6  // unanswered probes before the connection is reset
) // variables only so that a test can shorten them

// setKeepAlive turns keep-alive on with the figures above: four setsockopt calls.
func setKeepAlive(fd int) error {
	var serr error
	for _, o := range [...]struct{ level, opt, v int }{
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepIdle},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepInterval},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepCount},
	} {
		if e := syscall.SetsockoptInt(fd, o.level, o.opt, o.v); e != nil && serr == nil {
			serr = e
		}
	}
	return serr
}

// keepAliveControl is a net.Dialer or net.ListenConfig Control function that sets
// keep-alive on the socket before it connects or listens.
func keepAliveControl(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = setKeepAlive(int(fd)) })
	return cmp.Or(err, serr)
}

// listenConfig sets keep-alive once on the listening socket, whose accepted sockets
// inherit it: client connections get it for no system call of their own (Go's default
// would be four on every accepted connection). With freebind the socket may bind an
// address this host does not hold yet (IP_FREEBIND, IPV6_FREEBIND): a host of a
// cluster with --frontend-interface listens on every frontend address before it holds
// them, so it serves the moment it takes them over.
func listenConfig(freebind bool) net.ListenConfig {
	if !freebind {
		return net.ListenConfig{KeepAlive: -1, Control: keepAliveControl}
	}
	return net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = setKeepAlive(int(fd))
			// IP_FREEBIND covers IPv4 sockets; IPV6_FREEBIND IPv6 ones (an IPv4
			// socket refuses it, which is fine). IP_TRANSPARENT, inherited by
			// accepted sockets, lets a host that handed the address over go on
			// sending the answers of requests in flight from it (it needs
			// CAP_NET_ADMIN, which --frontend-interface needs anyway; without it
			// those answers are lost, nothing else changes). Nothing is redirected
			// to these sockets: that would take TPROXY rules.
			if e := syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1); e != nil && serr == nil {
				serr = e
			}
			syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)
			syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
		})
		return cmp.Or(err, serr)
	}}
}

// setConnKeepAlive turns keep-alive on for an established connection.
func setConnKeepAlive(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) { serr = setKeepAlive(int(fd)) })
	return cmp.Or(err, serr)
}
