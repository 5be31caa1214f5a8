package udpproxy

import (
	"net"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
)

// BenchmarkRoundTrip sends one datagram through the proxy to an echo node
// and reads the reply, per op: the whole per-datagram path both ways (front
// loop, node socket write, node loop, sendmmsg). Allocations are counted
// over the whole process, client and echo backend included, both of which
// are allocation-free, so allocs/op is the proxy's.
func BenchmarkRoundTrip(b *testing.B) {
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 69, 10)})
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	be := &testBackend{}
	pool, _ := balance.NewPool(balance.RoundRobin, []balance.Node{{ID: 1, Weight: 1, Addr: echo.LocalAddr().(*net.UDPAddr).AddrPort(), Data: be}})
	var r rig
	p, err := Listen(netipMust("127.0.69.1:0"), &Snapshot{Pool: pool, NB: &r.nb, Config: &r.cfg, Timeout: time.Minute}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 69, 100)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 64)
	buf := make([]byte, 2048)
	to := p.Addr()
	// Open the session outside the measurement.
	c.WriteToUDPAddrPort(msg, to)
	c.ReadFromUDPAddrPort(buf)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.WriteToUDPAddrPort(msg, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
