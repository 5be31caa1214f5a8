package dataplane

import (
	"cmp"
	"net"
	"syscall"
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
// would be four on every accepted connection).
func listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAlive: -1, Control: keepAliveControl}
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
