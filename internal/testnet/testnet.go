// Package testnet runs raw TCP backends on loopback for tests: a listener whose every
// connection is handed to a function, closed when the test ends, and backends built on
// it that more than one package needs.
package testnet

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
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

// UpgradeEcho listens on addr (as ServeConns) as a WebSocket-style backend: a request
// with "Upgrade: websocket" and exactly "Connection: upgrade" (what a proxy forwarding
// an upgrade sends) gets "101 Switching Protocols" and then every byte back; any other
// request gets a 400 and a close.
func UpgradeEcho(t testing.TB, addr string) net.Listener {
	t.Helper()
	return ServeConns(t, addr, func(c net.Conn) {
		r := bufio.NewReader(c)
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		if req.Header.Get("Upgrade") != "websocket" || !slices.Equal(req.Header.Values("Connection"), []string{"upgrade"}) {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, r) // echo frames back, whatever they are
	})
}
