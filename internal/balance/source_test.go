package balance

import (
	"math/rand/v2"
	"testing"
)

const sourceKeys = 10000

// mapping returns the node ID picked for each of the test keys.
func mapping(p *Pool) []int {
	m := make([]int, sourceKeys)
	for i := range m {
		if n := p.Pick(HashAddr(testAddr(i))); n != nil {
			m[i] = n.ID
		}
	}
	return m
}

func moved(a, b []int) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestSourceSameClientSameNode(t *testing.T) {
	p := newTestPool(t, Source, weighted(1, 2, 3, 4, 5)...)
	first := mapping(p)
	p.Pick(1) // no hidden state
	if n := moved(first, mapping(p)); n != 0 {
		t.Errorf("%d keys changed node between two identical passes", n)
	}
	// Another snapshot of the same nodes in another order maps alike.
	specs := weighted(1, 2, 3, 4, 5)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(specs), func(i, j int) { specs[i], specs[j] = specs[j], specs[i] })
	if n := moved(first, mapping(newTestPool(t, Source, specs...))); n != 0 {
		t.Errorf("%d keys changed node when the configuration lists nodes in another order", n)
	}
}

func TestSourceRemovingANodeMovesFewClients(t *testing.T) {
	for _, n := range []int{3, 5, 10, 40} {
		specs := weighted(make([]int, n)...)
		for i := range specs {
			specs[i].weight = 50
		}
		p := newTestPool(t, Source, specs...)
		before := mapping(p)
		victim := n / 2
		p.Lookup(victim).State.SetStatus(StatusDown)
		p.Refresh()
		after := mapping(p)
		got := moved(before, after)
		onVictim := 0
		for _, id := range before {
			if id == victim {
				onVictim++
			}
		}
		if limit := 2 * sourceKeys / n; got >= limit {
			t.Errorf("%d nodes, one DOWN: %d of %d keys moved, want < %d (2/N)", n, got, sourceKeys, limit)
		}
		if got < onVictim {
			t.Errorf("%d nodes: only %d keys moved but %d were on the DOWN node", n, got, onVictim)
		}
		for i := range after {
			if after[i] == victim {
				t.Fatalf("key %d still on the DOWN node", i)
			}
		}
		// Coming back restores the original mapping exactly.
		p.Lookup(victim).State.SetStatus(StatusUp)
		p.Refresh()
		if m := moved(before, mapping(p)); m != 0 {
			t.Errorf("%d nodes: %d keys did not return after the node came back", n, m)
		}
	}
}

func TestSourceAddingANodeMovesFewClients(t *testing.T) {
	for _, n := range []int{3, 10, 40} {
		weights := make([]int, n+1)
		for i := range weights {
			weights[i] = 50
		}
		all := weighted(weights...)
		before := mapping(newTestPool(t, Source, all[:n]...))
		after := mapping(newTestPool(t, Source, all...))
		if got, limit := moved(before, after), 2*sourceKeys/(n+1); got >= limit {
			t.Errorf("%d → %d nodes: %d keys moved, want < %d", n, n+1, got, limit)
		}
		// Maglev does not promise that only the new node gains keys, but
		// churn between old nodes must stay a small fraction.
		stray := 0
		for i := range before {
			if before[i] != after[i] && after[i] != n+1 {
				stray++
			}
		}
		t.Logf("%d → %d nodes: %d keys moved, %d of them between old nodes", n, n+1, moved(before, after), stray)
		if stray > sourceKeys/100 {
			t.Errorf("%d → %d nodes: %d keys moved between old nodes, want ≤ 1%%", n, n+1, stray)
		}
	}
}

func TestSourceRespectsWeights(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 2}, {10, 50, 255}, {1, 2, 3, 4}} {
		p := newTestPool(t, Source, weighted(weights...)...)
		assertShares(t, weights, count(p, sourceKeys), sourceKeys)
	}
}

func TestMaglevTableSharesFollowWeights(t *testing.T) {
	weights := []int{1, 7, 50, 255, 255}
	members := []uint16{0, 1, 2, 3, 4}
	ids := []int{10, 20, 30, 40, 50}
	table := buildMaglev(maglevSmall, members, ids, weights)
	slots := make([]int, len(members))
	for _, m := range table {
		slots[m]++
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	for i, w := range weights {
		want := float64(maglevSmall) * float64(w) / float64(total)
		if got := float64(slots[i]); got < want*0.99-1 || got > want*1.01+1 {
			t.Errorf("node weight %d owns %v slots, want %.0f ± 1%%", w, got, want)
		}
	}
}

func TestMaglevTableSizeDependsOnPoolSizeOnly(t *testing.T) {
	if maglevSize(1) != maglevSmall || maglevSize(655) != maglevSmall || maglevSize(656) != maglevLarge {
		t.Error("table size thresholds moved")
	}
	for _, m := range []int{maglevSmall, maglevLarge} {
		for d := 2; d*d <= m; d++ {
			if m%d == 0 {
				t.Fatalf("table size %d is not prime", m)
			}
		}
	}
}
