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

// goConn is a hot connection's net.Conn (hot_linux.go); never made without parking.
type goConn struct{}

func (*parkConn) enterGo(*clientConn) error { return errors.New("httpproxy: parking needs Linux") }

func (*parkConn) leaveGo(*clientConn) error { return nil }
