package balance

import (
	"slices"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// RingHash hashes the client address onto a consistent-hash ring of weighted
// points: the API's ring_hash (udp only).
var RingHash = Register(AlgorithmDef{AlgorithmInfo: model.AlgorithmInfo{Name: model.AlgorithmRingHash}, Build: buildRingHash})

// ringHash is a ring of points sorted by hash.
type ringHash struct {
	ring []ringPoint
}

func buildRingHash(e Eligible) Picker {
	weights, ids := e.weightsAndIDs()
	return &ringHash{ring: buildRing(e.idx, ids, weights)}
}

// ringPointsPerNode is how many points a node of average weight owns on the
// ring. With 160 points the share of keys a node gets stays within a few
// per cent of its weight share (ketama's figure), and a pick is a binary
// search over at most 160·N points.
const ringPointsPerNode = 160

// ringMaxPoints bounds the ring of a large pool (1,000 nodes of mixed
// weight): past it every node gets proportionally fewer points.
const ringMaxPoints = 1 << 18

// ringPoint is one point of the ring: the hash it sits at and the pool
// index of the node that owns the arc ending at it.
type ringPoint struct {
	hash uint64
	node uint16
}

// buildRing places weight-proportional points for each member on a 64-bit
// ring. A point's position depends only on its node's ID and its number, so
// adding a member only inserts its points (the keys that land on its arcs
// move to it and no others move), and removing one hands its arcs to the
// points that follow: the ring moves the minimum, about 1/N of keys, which
// Maglev only approximates. The cost is a binary search per pick, O(log N),
// instead of Maglev's one table read.
func buildRing(members []uint16, ids []int, weights []int) []ringPoint {
	total := 0
	for _, w := range weights {
		total += w
	}
	if total == 0 {
		return nil
	}
	// points(w) = w / mean(w) · ringPointsPerNode, at least one.
	budget := min(ringPointsPerNode*len(members), ringMaxPoints)
	ring := make([]ringPoint, 0, budget+len(members))
	for j, i := range members {
		n := max(1, budget*weights[j]/total)
		id := uint64(ids[j])
		for k := range n {
			ring = append(ring, ringPoint{hash: mix64(mix64(id^0x3c6ef372fe94f82b) ^ uint64(k)), node: i})
		}
	}
	// Ties (vanishingly rare) are broken by node index so the order, and so
	// the owner of every key, never depends on the order of members.
	slices.SortFunc(ring, func(a, b ringPoint) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.node) - int(b.node)
	})
	return ring
}

// Pick returns the owner of the first point at or after the key on the ring,
// walking on past nodes that are DOWN or excluded.
func (rh *ringHash) Pick(q Query) *Node {
	r := rh.ring
	n := len(r)
	// The first point at or after key, by binary search.
	s, hi := 0, n
	for s < hi {
		m := int(uint(s+hi) >> 1)
		if r[m].hash < q.Key {
			s = m + 1
		} else {
			hi = m
		}
	}
	for range retrySteps {
		if s == n {
			s = 0
		}
		if i := r[s].node; q.usable(i) {
			return q.node(i)
		}
		s++
	}
	return q.Scan(q.Key)
}
