package dataplane

import (
	"cmp"
	"net"
	"syscall"
)

// listenConfig sets TCP keep-alive (Go's defaults: probes after 15 s idle, every 15 s,
// 9 of them) once on the listening socket, whose accepted sockets inherit it, instead
// of with four system calls on every accepted connection.
func listenConfig() net.ListenConfig {
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
		})
		return cmp.Or(err, serr)
	}}
}
