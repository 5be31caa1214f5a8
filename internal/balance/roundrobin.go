package balance

import "github.com/nodebalancer/nodebalancer/internal/model"

// RoundRobin is smooth weighted round robin (nginx's algorithm): the API's
// roundrobin and its default.
var RoundRobin = Register(AlgorithmDef{AlgorithmInfo: model.AlgorithmInfo{Name: model.AlgorithmRoundRobin}, Build: buildRoundRobin})

// roundRobin plays one precomputed cycle; a pick is one atomic increment and one
// array read, whatever the node count.
type roundRobin struct {
	seq []uint16 // pool indexes: one cycle of smooth weighted round robin
}

func buildRoundRobin(e Eligible) Picker {
	weights, _ := e.weightsAndIDs()
	return &roundRobin{seq: smoothSequence(e.idx, weights)}
}

// Pick takes the next turn of the cycle, walking on past nodes it cannot use.
func (r *roundRobin) Pick(q Query) *Node {
	c := q.Turn()
	n := uint64(len(r.seq))
	for s := range uint64(retrySteps) {
		if i := r.seq[(c+s)%n]; q.usable(i) {
			return q.node(i)
		}
	}
	return q.Scan(c)
}

// smoothSequence returns one full cycle of nginx's smooth weighted round robin
// over the given members (pool indexes, in pool order) and weights, as pool
// indexes. Playing the cycle in a loop gives exactly the picks nginx would
// make: at every step each member's current weight grows by its weight, the
// member with the largest current weight (the earliest on a tie) is picked and
// its current weight drops by the total. Weights 5,1,1 give a a b a c a a.
//
// Weights are first divided by their greatest common divisor, which scales
// every current weight alike and so leaves the sequence unchanged while
// shortening the cycle (all nodes at the default weight 50 give a cycle of
// one pick per node).
//
// Members that share a weight are picked in turn, so the simulation keeps one
// candidate per distinct weight instead of one per member: a step costs
// O(distinct weights) ≤ 255 rather than O(members), and the whole cycle
// O(cycle × distinct weights). The worst case (thousands of nodes with many
// different, co-prime weights) takes a fraction of a second, once per change
// of the eligible set, off the hot path.
func smoothSequence(members []uint16, weights []int) []uint16 {
	if len(members) == 0 {
		return nil
	}
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	type group struct {
		w       int64    // reduced weight
		members []uint16 // pool indexes, in pool order
		next    int      // member to pick next: every earlier one has one pick more
		k       int64    // picks of members[next]
	}
	var groups []group
	slot := make(map[int]int) // reduced weight -> index in groups
	total := int64(0)
	for i, m := range members {
		w := weights[i] / g
		total += int64(w)
		gi, ok := slot[w]
		if !ok {
			gi = len(groups)
			slot[w] = gi
			groups = append(groups, group{w: int64(w)})
		}
		groups[gi].members = append(groups[gi].members, m)
	}
	seq := make([]uint16, total)
	for t := int64(1); t <= total; t++ {
		best := -1
		var bestV int64
		var bestM uint16
		for gi := range groups {
			gr := &groups[gi]
			v := t*gr.w - total*gr.k
			m := gr.members[gr.next]
			if best < 0 || v > bestV || (v == bestV && m < bestM) {
				best, bestV, bestM = gi, v, m
			}
		}
		seq[t-1] = bestM
		gr := &groups[best]
		gr.next++
		if gr.next == len(gr.members) {
			gr.next = 0
			gr.k++
		}
	}
	return seq
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
