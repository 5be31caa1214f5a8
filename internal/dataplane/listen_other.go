//go:build !linux

package dataplane

import "net"

// listenConfig leaves TCP keep-alive to Go, which sets it on each accepted connection;
// binding addresses not held yet (freebind) is Linux only.
func listenConfig(bool) net.ListenConfig { return net.ListenConfig{} }
