package udpproxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// testBackend is a Backend that counts what the proxy reports.
type testBackend struct {
	ctr       stats.Counters
	failures  atomic.Int64
	successes atomic.Int64
}

func (b *testBackend) Counters() *stats.Counters { return &b.ctr }
func (b *testBackend) PassiveFailure()           { b.failures.Add(1) }
func (b *testBackend) PassiveSuccess()           { b.successes.Add(1) }

// rig is a proxy in front of echo backends.
type rig struct {
	t        *testing.T
	p        *Proxy
	echoes   []*testnet.UDPEcho
	backends []*testBackend
	nb, cfg  stats.Counters
	mu       sync.Mutex
	log      []Entry
}

// newRig starts n echo backends on 127.0.66.(10+i) and a proxy on
// 127.0.66.1 in front of them.
func newRig(t *testing.T, algo balance.Algorithm, timeout time.Duration, addrs ...netip.AddrPort) *rig {
	t.Helper()
	return newRigWith(t, algo, timeout, nil, addrs...)
}

// newRigWith is newRig with a hook that adjusts the proxy's options.
func newRigWith(t *testing.T, algo balance.Algorithm, timeout time.Duration, adjust func(*Options), addrs ...netip.AddrPort) *rig {
	t.Helper()
	r := &rig{t: t}
	var nodes []balance.Node
	for i, a := range addrs {
		if a.Port() == 0 {
			e := testnet.ServeUDPEcho(t, "node"+string(rune('A'+i)), a.String())
			r.echoes = append(r.echoes, e)
			a = e.Addr()
		}
		b := &testBackend{}
		r.backends = append(r.backends, b)
		nodes = append(nodes, balance.Node{ID: i + 1, Weight: 1, Addr: a, Data: b})
	}
	pool, err := balance.NewPool(algo, nodes)
	if err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{NodeBalancerID: 1, ConfigID: 2, Pool: pool, NB: &r.nb, Config: &r.cfg, Timeout: timeout}
	o := Options{AccessLog: func(_, _ int, e Entry) {
		r.mu.Lock()
		r.log = append(r.log, e)
		r.mu.Unlock()
	}}
	if adjust != nil {
		adjust(&o)
	}
	r.p, err = Listen(netip.MustParseAddrPort("127.0.66.1:0"), s, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.p.Close)
	return r
}

func echoAt(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 66, byte(10 + i)}), 0)
}

// client opens a UDP socket on the given loopback address.
func (r *rig) client(addr string) *net.UDPConn {
	r.t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// ask sends msg from c to the proxy and returns the reply and where it came from.
func (r *rig) ask(c *net.UDPConn, msg []byte) ([]byte, netip.AddrPort) {
	r.t.Helper()
	if _, err := c.WriteToUDPAddrPort(msg, r.p.Addr()); err != nil {
		r.t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		r.t.Fatalf("no reply to %d bytes: %v", len(msg), err)
	}
	return buf[:n], from
}

func (r *rig) entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Entry(nil), r.log...)
}

// eventually polls cond for up to 3 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func netipMust(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
