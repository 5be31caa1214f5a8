package balance

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// nginxSWRR is nginx's smooth weighted round robin written out plainly, the
// reference the pool's precomputed cycle must reproduce pick for pick.
func nginxSWRR(weights []int, picks int) []int {
	cur := make([]int, len(weights))
	total := 0
	for _, w := range weights {
		total += w
	}
	out := make([]int, picks)
	for k := range out {
		best := -1
		for i, w := range weights {
			cur[i] += w
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out[k] = best
	}
	return out
}

// letters picks n times and spells the picks with a for ID 1, b for ID 2...
func letters(p *Pool, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(byte('a' + p.Pick(0).ID - 1))
	}
	return b.String()
}

func TestRoundRobinIsSmoothLikeNginx(t *testing.T) {
	cases := []struct {
		weights []int
		want    string
	}{
		{[]int{5, 1, 1}, "aabacaa" + "aabacaa"},
		{[]int{1, 1, 1}, "abcabc"},
		{[]int{2, 1}, "aba" + "aba"},
		{[]int{1, 2}, "bab"},
		{[]int{50, 10, 10}, "aabacaa"}, // same ratios, same sequence
		{[]int{4, 2, 1}, "abacaba"},
		{[]int{3, 3, 1}, "abcabab"},
	}
	for _, c := range cases {
		p := newTestPool(t, RoundRobin, weighted(c.weights...)...)
		if got := letters(p, len(c.want)); got != c.want {
			t.Errorf("weights %v: picks %q, want %q", c.weights, got, c.want)
		}
	}
}

func TestRoundRobinMatchesNginxForRandomWeights(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 1 + r.IntN(12)
		weights := make([]int, n)
		for i := range weights {
			// Few distinct values in some trials, so that groups of equal
			// weights and their tie-breaks are exercised.
			if trial%2 == 0 {
				weights[i] = 1 + r.IntN(3)*50
			} else {
				weights[i] = 1 + r.IntN(MaxWeight)
			}
		}
		p := newTestPool(t, RoundRobin, weighted(weights...)...)
		picks := 0
		for _, w := range weights {
			picks += w
		}
		picks = picks*2 + 5 // more than one cycle
		want := nginxSWRR(weights, picks)
		for k, wi := range want {
			if got := p.Pick(0).ID - 1; got != wi {
				t.Fatalf("weights %v: pick %d is node %d, nginx picks %d", weights, k, got, wi)
			}
		}
	}
}

func TestRoundRobinDistributionFollowsWeights(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 2}, {10, 50, 255}, {1, 255}, {3, 7, 11, 13}} {
		p := newTestPool(t, RoundRobin, weighted(weights...)...)
		assertShares(t, weights, count(p, 10000), 10000)
	}
}

// assertShares checks that each node's share of picks is within 3 percentage
// points of its share of the total weight.
func assertShares(t *testing.T, weights []int, got map[int]int, picks int) {
	t.Helper()
	total := 0
	for _, w := range weights {
		total += w
	}
	for i, w := range weights {
		want := 100 * float64(w) / float64(total)
		share := 100 * float64(got[i+1]) / float64(picks)
		if share < want-3 || share > want+3 {
			t.Errorf("weights %v: node %d got %.1f%% of picks, want %.1f%% ± 3", weights, i+1, share, want)
		}
	}
}

func TestRoundRobinSkipsNodesThatWentDown(t *testing.T) {
	p := newTestPool(t, RoundRobin, weighted(5, 1, 1)...)
	p.Lookup(1).State.SetStatus(StatusDown)
	// No Refresh yet: the stale cycle still names node 1, Pick must skip it.
	for range 50 {
		if n := p.Pick(0); n == nil || n.ID == 1 {
			t.Fatalf("picked %v while node 1 is DOWN", n)
		}
	}
	if !p.Refresh() {
		t.Fatal("Refresh after a node went DOWN did not rebuild")
	}
	if got := letters(p, 4); got != "bcbc" {
		t.Errorf("after Refresh picks %q, want bcbc", got)
	}
}
