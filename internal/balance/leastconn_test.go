package balance

import "testing"

func TestLeastConnFollowsActiveConnections(t *testing.T) {
	p := newTestPool(t, LeastConn, weighted(1, 1, 1)...)
	a, b, c := p.Lookup(1), p.Lookup(2), p.Lookup(3)
	a.State.Acquire()
	a.State.Acquire()
	b.State.Acquire()
	for range 10 {
		if n := p.Pick(0); n != c {
			t.Fatalf("with active 2,1,0 picked node %d, want 3", n.ID)
		}
	}
	a.State.Release()
	a.State.Release()
	c.State.Acquire()
	c.State.Acquire()
	if n := p.Pick(0); n != a {
		t.Errorf("with active 0,1,2 picked node %d, want 1", n.ID)
	}
}

func TestLeastConnRotatesTies(t *testing.T) {
	p := newTestPool(t, LeastConn, weighted(5, 5, 5, 5)...)
	c := count(p, 400)
	for id := 1; id <= 4; id++ {
		if c[id] != 100 {
			t.Errorf("idle equal nodes: picks %v, want 100 each", c)
			break
		}
	}
}

func TestLeastConnRespectsWeights(t *testing.T) {
	// Connections that never end: the counts must settle in proportion to
	// the weights (active/weight kept level).
	weights := []int{1, 3, 12}
	p := newTestPool(t, LeastConn, weighted(weights...)...)
	for range 1600 {
		p.Pick(0).State.Acquire()
	}
	for i, w := range weights {
		got := p.Lookup(i + 1).State.Active()
		if want := int64(1600 * w / 16); got < want-1 || got > want+1 {
			t.Errorf("node %d (weight %d) has %d connections, want %d ± 1", i+1, w, got, want)
		}
	}
}

func TestLeastConnPicksByRatioNotCount(t *testing.T) {
	// Node 1: 3 active at weight 1 (ratio 3). Node 2: 10 active at weight 5
	// (ratio 2). Fewest connections is node 1, fewest per weight is node 2.
	p := newTestPool(t, LeastConn, weighted(1, 5)...)
	for range 3 {
		p.Lookup(1).State.Acquire()
	}
	for range 10 {
		p.Lookup(2).State.Acquire()
	}
	if n := p.Pick(0); n.ID != 2 {
		t.Errorf("picked node %d, want node 2 (lower active/weight)", n.ID)
	}
}
