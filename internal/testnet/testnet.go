// Package testnet runs raw TCP backends on loopback for tests: a listener whose every
// connection is handed to a function, closed when the test ends.
package testnet

import (
	"net"
	"testing"
)

// ServeConns listens on addr (a loopback address; port 0 picks one) and calls handle
// for each accepted connection on its own goroutine, closing the connection after
// handle returns. The listener closes when the test ends; close it earlier to make
// the address refuse connections.
func ServeConns(t testing.TB, addr string, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln
}
