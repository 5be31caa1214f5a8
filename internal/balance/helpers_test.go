package balance

import (
	"net/netip"
	"testing"
)

// spec describes one node of a test pool.
type spec struct {
	id     int
	weight int
	mode   Mode
	status Status
}

// newTestPool builds a pool of the given nodes, failing the test on error.
func newTestPool(tb testing.TB, algo Algorithm, specs ...spec) *Pool {
	tb.Helper()
	nodes := make([]Node, len(specs))
	for i, s := range specs {
		st := new(State)
		st.SetStatus(s.status)
		w := s.weight
		if w == 0 {
			w = 1
		}
		nodes[i] = Node{ID: s.id, Weight: w, Mode: s.mode, State: st}
	}
	p, err := NewPool(algo, nodes)
	if err != nil {
		tb.Fatalf("NewPool: %v", err)
	}
	return p
}

// weighted returns accept-mode specs with IDs 1.. and the given weights.
func weighted(weights ...int) []spec {
	s := make([]spec, len(weights))
	for i, w := range weights {
		s[i] = spec{id: i + 1, weight: w}
	}
	return s
}

// testAddr returns the i-th of a family of distinct client addresses.
func testAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// count picks n times with keys derived from i and returns picks per node ID
// (0 counts nil picks).
func count(p *Pool, n int) map[int]int {
	c := make(map[int]int)
	for i := range n {
		nd := p.Pick(HashAddr(testAddr(i)))
		if nd == nil {
			c[0]++
			continue
		}
		c[nd.ID]++
	}
	return c
}

var algorithms = []Algorithm{RoundRobin, LeastConn, Source}
