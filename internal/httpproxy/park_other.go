//go:build !linux

package httpproxy

import "errors"

// parkSupported reports whether this platform can park connections: not without epoll.
const parkSupported = false

type poller struct{}

func register(*parkConn) error { return errors.New("httpproxy: parking needs Linux") }

func (*poller) unregister(*parkConn) {}

func (*parkConn) poller() *poller { return nil }
