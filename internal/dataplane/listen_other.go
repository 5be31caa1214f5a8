//go:build !linux

package dataplane

import "net"

// listenConfig leaves TCP keep-alive to Go, which sets it on each accepted connection.
func listenConfig() net.ListenConfig { return net.ListenConfig{} }
