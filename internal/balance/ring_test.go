package balance

import (
	"math"
	"testing"
)

func TestRingHashAddingANodeMovesOnlyItsShare(t *testing.T) {
	for _, n := range []int{3, 5, 10, 40} {
		before := mapping(newTestPool(t, RingHash, weighted(repeat(50, n)...)...))
		after := mapping(newTestPool(t, RingHash, weighted(repeat(50, n+1)...)...))
		got := moved(before, after)
		for i := range after {
			// Consistency: a key that moves can only move to the new node.
			if before[i] != after[i] && after[i] != n+1 {
				t.Fatalf("%d→%d nodes: key %d moved from node %d to old node %d", n, n+1, i, before[i], after[i])
			}
		}
		want := float64(sourceKeys) / float64(n+1)
		if math.Abs(float64(got)-want) > 0.35*want {
			t.Errorf("%d→%d nodes: %d of %d keys moved, want about %.0f (1/N)", n, n+1, got, sourceKeys, want)
		}
	}
}

func TestRingHashDownNodeHandsOnlyItsKeysOver(t *testing.T) {
	p := newTestPool(t, RingHash, weighted(repeat(50, 6)...)...)
	before := mapping(p)
	p.Lookup(4).State.SetStatus(StatusDown)
	// Before the refresh the live status check already steers around it.
	stale := mapping(p)
	p.Refresh()
	after := mapping(p)
	for i := range before {
		if before[i] != 4 && (after[i] != before[i] || stale[i] != before[i]) {
			t.Fatalf("key %d moved from node %d, which stayed UP", i, before[i])
		}
		if after[i] == 4 || stale[i] == 4 {
			t.Fatalf("key %d still on the DOWN node", i)
		}
	}
	p.Lookup(4).State.SetStatus(StatusUp)
	p.Refresh()
	if m := moved(before, mapping(p)); m != 0 {
		t.Errorf("%d keys did not return after the node came back", m)
	}
}

func TestRingHashFollowsWeights(t *testing.T) {
	p := newTestPool(t, RingHash, weighted(1, 2, 3, 4)...)
	got := count(p, 100000)
	for id, w := range []int{1, 2, 3, 4} {
		share := float64(got[id+1]) / 100000
		want := float64(w) / 10
		if math.Abs(share-want) > 0.25*want {
			t.Errorf("node %d (weight %d): share %.3f, want about %.3f", id+1, w, share, want)
		}
	}
}

func TestRingHashPickIsOrderIndependentAndAllocationFree(t *testing.T) {
	a := newTestPool(t, RingHash, weighted(5, 1, 7, 3)...)
	specs := weighted(5, 1, 7, 3)
	specs[0], specs[3] = specs[3], specs[0]
	b := newTestPool(t, RingHash, specs...)
	if m := moved(mapping(a), mapping(b)); m != 0 {
		t.Errorf("%d keys map differently when the nodes are listed in another order", m)
	}
	if allocs := testing.AllocsPerRun(1000, func() { a.Pick(HashAddr(testAddr(7))) }); allocs != 0 {
		t.Errorf("Pick allocates %.1f times", allocs)
	}
}

func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}
