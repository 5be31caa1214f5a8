package balance

import "github.com/nodebalancer/nodebalancer/internal/model"

// LeastConn picks the node with the fewest active connections per unit of weight:
// the API's leastconn.
var LeastConn = Register(AlgorithmDef{AlgorithmInfo: model.AlgorithmInfo{Name: model.AlgorithmLeastConn}, Build: buildLeastConn})

// leastConn scans every eligible node: exact, O(N) per pick.
type leastConn struct {
	lc []lcEntry
}

// lcEntry is one eligible node as leastConn scans it, packed so the scan walks
// one contiguous array.
type lcEntry struct {
	st  *State
	w   int32
	idx uint16
}

func buildLeastConn(e Eligible) Picker {
	l := &leastConn{lc: make([]lcEntry, len(e.idx))}
	for j, i := range e.idx {
		n := &e.nodes[i]
		l.lc[j] = lcEntry{st: n.State, w: int32(n.Weight), idx: i}
	}
	return l
}

// Pick returns the eligible node with the fewest active connections per unit of
// weight: a beats b when active_a·weight_b < active_b·weight_a. The scan starts at
// a rotating position and keeps the first best it meets, so equally loaded nodes
// take turns.
func (l *leastConn) Pick(q Query) *Node {
	lc := l.lc
	start := int(q.Turn() % uint64(len(lc)))
	best, bestActive, bestWeight := lcScan(lc[start:], q.ex, -1, 0, 0)
	if best >= 0 {
		best += start
	}
	best, _, _ = lcScan(lc[:start], q.ex, best, bestActive, bestWeight)
	if best < 0 {
		return q.Scan(uint64(start))
	}
	return q.node(lc[best].idx)
}

// lcScan returns the index in lc of the entry that beats the given best (an
// index, -1 for none, with its active count and weight), or best itself.
func lcScan(lc []lcEntry, ex, best int, bestActive, bestWeight int64) (int, int64, int64) {
	found := -1
	for i := range lc {
		e := &lc[i]
		a := e.st.Active()
		if (best < 0 && found < 0 || a*bestWeight < bestActive*int64(e.w)) && int(e.idx) != ex && e.st.Status() != StatusDown {
			found, bestActive, bestWeight = i, a, int64(e.w)
		}
	}
	if found >= 0 {
		return found, bestActive, bestWeight
	}
	return best, bestActive, bestWeight
}
