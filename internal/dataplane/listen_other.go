//go:build !linux

package dataplane

import (
	"net"
	"time"
)

// TCP keep-alive figures, as on Linux (listen_linux.go): a silent peer is declared dead
// after 60 + 6 × 10 = 120 s.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 6}

// listenConfig sets keep-alive on each accepted connection, through Go; binding
// addresses not held yet (freebind) is Linux only.
func listenConfig(bool) net.ListenConfig { return net.ListenConfig{KeepAliveConfig: keepAlive} }

// setConnKeepAlive turns keep-alive on for an established connection.
func setConnKeepAlive(c *net.TCPConn) error { return c.SetKeepAliveConfig(keepAlive) }
