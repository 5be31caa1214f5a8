package balance

import (
	"math/bits"
	"sort"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Source hashes the client address onto the nodes with a Maglev table: the API's
// source (not for udp).
var Source = Register(AlgorithmDef{AlgorithmInfo: model.AlgorithmInfo{Name: model.AlgorithmSource}, Build: buildSource})

// source is a Maglev lookup table; a pick is one multiply and one table read.
type source struct {
	table []uint16 // pool indexes
}

func buildSource(e Eligible) Picker {
	weights, ids := e.weightsAndIDs()
	// Sized by the pool's node count, not the eligible one: see maglevSize.
	return &source{table: buildMaglev(maglevSize(len(e.nodes)), e.idx, ids, weights)}
}

// Pick reads the client's slot, walking on past nodes it cannot use: the same
// fallback for the same key every time.
func (m *source) Pick(q Query) *Node {
	n := len(m.table)
	s, _ := bits.Mul64(q.Key, uint64(n))
	for range retrySteps {
		if i := m.table[s]; q.usable(i) {
			return q.node(i)
		}
		if s++; s == uint64(n) {
			s = 0
		}
	}
	return q.Scan(q.Key)
}

// Maglev lookup table sizes. Both are prime, as Maglev requires so that every
// skip visits every slot. The Maglev paper shows the load skew stays within
// about 1 % while the table has at least 100 slots per node, hence the small
// table up to 655 nodes and the large one (good to 6,553) above. The size
// depends on the number of nodes in the pool, not on how many are eligible, so
// a health change never resizes the table (which would move every client).
const (
	maglevSmall         = 65537
	maglevLarge         = 655373
	maglevSmallMaxNodes = maglevSmall / 100
)

// maglevSize returns the table size for a pool of n nodes.
func maglevSize(n int) int {
	if n <= maglevSmallMaxNodes {
		return maglevSmall
	}
	return maglevLarge
}

const maglevEmpty = ^uint16(0)

// buildMaglev returns a Maglev lookup table of size m (prime) whose slots hold
// pool indexes of the members, each member owning a share of slots
// proportional to its weight.
//
// Each member has a fixed preference order over the slots, derived from its
// node ID alone (offset + i·skip mod m), so it does not depend on which other
// members exist or on the order the configuration lists them in. Members take
// turns claiming their next preferred free slot; a member of weight w takes
// its k-th turn at virtual time k/w (ties go to the lower node ID), which for
// equal weights is the paper's plain round of turns. Removing a member frees
// its slots and perturbs the others' only slightly, which is why few clients
// move when the eligible set changes.
func buildMaglev(m int, members []uint16, ids []int, weights []int) []uint16 {
	n := len(members)
	table := make([]uint16, m)
	if n == 0 {
		return table[:0]
	}
	for i := range table {
		table[i] = maglevEmpty
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return ids[order[a]] < ids[order[b]] })

	type member struct {
		node  uint16
		w     int64
		turn  int64 // turns taken + 1
		pos   int   // next preferred slot
		skip  int
		index int // position in ID order, the tie-break
	}
	ms := make([]member, n)
	for j, i := range order {
		id := uint64(ids[i])
		ms[j] = member{
			node:  members[i],
			w:     int64(weights[i]),
			turn:  1,
			pos:   int(mix64(id^0x6a09e667f3bcc908) % uint64(m)),
			skip:  int(mix64(id^0xbb67ae8584caa73b)%uint64(m-1)) + 1,
			index: j,
		}
	}
	// A binary min-heap of members ordered by the virtual time of their
	// next turn, turn/w, compared without division.
	heap := make([]int32, n)
	for j := range heap {
		heap[j] = int32(j)
	}
	less := func(a, b int32) bool {
		x, y := &ms[a], &ms[b]
		l, r := x.turn*y.w, y.turn*x.w
		return l < r || (l == r && x.index < y.index)
	}
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= n {
				return
			}
			if c+1 < n && less(heap[c+1], heap[c]) {
				c++
			}
			if !less(heap[c], heap[i]) {
				return
			}
			heap[i], heap[c] = heap[c], heap[i]
			i = c
		}
	}
	for i := n/2 - 1; i >= 0; i-- {
		down(i)
	}
	for filled := 0; filled < m; filled++ {
		x := &ms[heap[0]]
		for table[x.pos] != maglevEmpty {
			x.pos += x.skip
			if x.pos >= m {
				x.pos -= m
			}
		}
		table[x.pos] = x.node
		x.turn++
		down(0)
	}
	return table
}
