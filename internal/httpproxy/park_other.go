//go:build !linux

package httpproxy

import (
	"errors"
	"net"
)

// parkSupported reports whether this platform can park connections: not without epoll.
const parkSupported = false

type poller struct{}

func (*parkConn) pollFor(bool) error { return errors.New("httpproxy: parking needs Linux") }

func (*poller) unregister(*parkConn) {}

func (*parkConn) poller() *poller { return nil }

func detachFD(*net.TCPConn) int { return -1 }
