package balance

// This file is the hot path: it runs once per new connection (and once more
// per retry). It reads the published table and the nodes' atomics, takes no
// lock and allocates nothing.

// retrySteps bounds how far Pick walks the round-robin cycle or the Maglev
// table past a node it cannot use before it falls back to a scan.
const retrySteps = 8

// Pick chooses a node for a new, non-sticky client. key is the client's
// HashAddr; only the algorithms that map clients to nodes (source, ring_hash) use it. It returns nil when no node is
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
	return t.picker.Pick(Query{Key: key, p: p, ex: ex})
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
