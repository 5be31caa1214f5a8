package balance

import "math/bits"

// This file is the hot path: it runs once per new connection (and once more
// per retry). It reads the published table and the nodes' atomics, takes no
// lock and allocates nothing.

// retrySteps bounds how far Pick walks the round-robin cycle or the Maglev
// table past a node it cannot use before it falls back to a scan.
const retrySteps = 8

// Pick chooses a node for a new, non-sticky client. key is the client's
// HashAddr; only the Source and RingHash algorithms use it. It returns nil when no node is
// eligible. A node that went DOWN since the last Refresh is never returned:
// Pick checks the chosen node's live status and moves on to another.
func (p *Pool) Pick(key uint64) *Node { return p.pick(key, -1) }

// PickExcluding is Pick for a retry after connecting to exclude failed: it
// never returns exclude (which may be nil, making it Pick). Source picks the
// same fallback node for the same key every time.
func (p *Pool) PickExcluding(key uint64, exclude *Node) *Node {
	ex := -1
	if exclude != nil && int(exclude.index) < len(p.nodes) && &p.nodes[exclude.index] == exclude {
		ex = int(exclude.index)
	}
	return p.pick(key, ex)
}

// usable reports whether the pool's i-th node may be returned by a pick that
// excludes index ex.
func (p *Pool) usable(i uint16, ex int) bool {
	return int(i) != ex && p.nodes[i].State.Status() != StatusDown
}

func (p *Pool) pick(key uint64, ex int) *Node {
	t := p.tab.Load()
	if len(t.elig) == 0 {
		return nil
	}
	switch p.algo {
	case RoundRobin:
		c := p.ctr.Add(1) - 1
		n := uint64(len(t.seq))
		for s := range uint64(retrySteps) {
			if i := t.seq[(c+s)%n]; p.usable(i, ex) {
				return &p.nodes[i]
			}
		}
		return p.scan(c, ex)
	case LeastConn:
		return p.leastConn(t, ex)
	case RingHash:
		return p.ringPick(t, key, ex)
	default: // Source
		n := len(t.maglev)
		s, _ := bits.Mul64(key, uint64(n))
		for range retrySteps {
			if i := t.maglev[s]; p.usable(i, ex) {
				return &p.nodes[i]
			}
			if s++; s == uint64(n) {
				s = 0
			}
		}
		return p.scan(key, ex)
	}
}

// leastConn returns the eligible node with the fewest active connections per
// unit of weight: a beats b when active_a·weight_b < active_b·weight_a. The
// scan starts at a rotating position and keeps the first best it meets, so
// equally loaded nodes take turns.
func (p *Pool) leastConn(t *table, ex int) *Node {
	lc := t.lc
	start := int(p.ctr.Add(1) % uint64(len(lc)))
	best, bestActive, bestWeight := lcScan(lc[start:], ex, -1, 0, 0)
	if best >= 0 {
		best += start
	}
	best, _, _ = lcScan(lc[:start], ex, best, bestActive, bestWeight)
	if best < 0 {
		return p.scan(uint64(start), ex)
	}
	return &p.nodes[lc[best].idx]
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

// scan is the slow path for a table gone stale (the nodes it would pick went
// DOWN and Refresh has not run yet) or a retry with nothing else in the
// table: it applies the eligibility rules to the live statuses, ignoring
// weights, and returns the first usable accept node from a position derived
// from start, else the first usable backup node, else nil.
func (p *Pool) scan(start uint64, ex int) *Node {
	n := len(p.nodes)
	first := int(start % uint64(n))
	for _, mode := range [...]Mode{ModeAccept, ModeBackup} {
		i := first
		for range n {
			if p.nodes[i].Mode == mode && p.usable(uint16(i), ex) {
				return &p.nodes[i]
			}
			if i++; i == n {
				i = 0
			}
		}
	}
	return nil
}
