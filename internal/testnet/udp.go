package testnet

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// UDPEcho is a UDP backend on loopback for tests: it echoes every datagram,
// except one starting with "who?", which it answers with its Name. It
// records the source addresses it saw, so a test can count the sessions a
// proxy opened towards it.
type UDPEcho struct {
	Name string
	Conn *net.UDPConn

	mu      sync.Mutex
	sources map[netip.AddrPort]int
	total   int
}

// ServeUDPEcho runs a UDPEcho on addr (port 0 picks one) until the test ends.
func ServeUDPEcho(t testing.TB, name, addr string) *UDPEcho {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", a)
	if err != nil {
		t.Fatal(err)
	}
	e := &UDPEcho{Name: name, Conn: c, sources: map[netip.AddrPort]int{}}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			e.mu.Lock()
			e.sources[from]++
			e.total++
			e.mu.Unlock()
			reply := buf[:n]
			if bytes.HasPrefix(reply, []byte("who?")) {
				reply = []byte(name)
			}
			c.WriteToUDPAddrPort(reply, from)
		}
	}()
	return e
}

// Addr returns the address the backend listens on.
func (e *UDPEcho) Addr() netip.AddrPort { return e.Conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Datagrams returns how many datagrams the backend received.
func (e *UDPEcho) Datagrams() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}

// Sources returns how many distinct source addresses sent to the backend.
func (e *UDPEcho) Sources() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sources)
}
