package balance

import (
	"fmt"
	"sync"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// An algorithm is one file of this package (or of any package that imports it)
// that registers itself, as Caddy's selection policies do:
//
//	var Toy = balance.Register(balance.AlgorithmDef{
//		AlgorithmInfo: model.AlgorithmInfo{Name: "toy", Label: "Toy", Protocols: ...},
//		Build:         buildToy, // func(balance.Eligible) balance.Picker
//	})
//
// Register also describes it to model, so the API accepts it with the protocols it
// names, refuses it with the others in the same words as Linode's values, and the
// CLI's help and the console's choices list it. The pool does the rest: modes,
// backups, DOWN nodes, stickiness, retries and the stale-table fallback are the
// same for every algorithm, which only chooses among the eligible nodes.

// Picker is one algorithm's pick table over the eligible nodes of one Pool. Build
// makes one whenever the eligible set changes (off the hot path); it is immutable
// after, and every new connection of the pool calls Pick, concurrently.
type Picker interface {
	// Pick returns a node for the client of q.Key that q.Usable accepts. When none
	// of the candidates its table offers is usable (the table has gone stale: a
	// node went DOWN since Build) it returns q.Scan(start), and nil only when that
	// does. It must not lock or allocate.
	Pick(q Query) *Node
}

// AlgorithmDef is what Register needs to know of an algorithm.
type AlgorithmDef struct {
	// AlgorithmInfo names the algorithm and the protocols it serves. Linode's
	// algorithms, which model describes, give only the Name.
	model.AlgorithmInfo
	// Build returns the algorithm's Picker over the eligible nodes, which it
	// must not keep a reference to beyond what it reads (it may keep the *Node
	// pointers). e.Len() is at least 1.
	Build func(e Eligible) Picker
}

// Algorithm is a registered balancing algorithm: what NewPool is given. The zero
// value is no algorithm.
type Algorithm struct{ def *AlgorithmDef }

// registered are the registered algorithms, by name.
var registered struct {
	mu     sync.RWMutex
	byName map[model.Algorithm]*AlgorithmDef
}

// Register adds an algorithm and returns its handle. Call it from a package-level
// variable or an init function. It panics when the name is registered already,
// Build is nil, or the description is incomplete (see model.RegisterAlgorithm):
// mistakes to find at start, not at the first connection.
func Register(d AlgorithmDef) Algorithm {
	if d.Build == nil {
		panic(fmt.Sprintf("balance: algorithm %q has no Build", d.Name))
	}
	registered.mu.Lock()
	defer registered.mu.Unlock()
	if registered.byName[d.Name] != nil {
		panic(fmt.Sprintf("balance: algorithm %q registered twice", d.Name))
	}
	if _, described := model.LookupAlgorithm(d.Name); described {
		if d.Label != "" || d.Protocols != nil {
			panic(fmt.Sprintf("balance: algorithm %q is described in model; give only its Name", d.Name))
		}
	} else {
		model.RegisterAlgorithm(d.AlgorithmInfo)
	}
	if registered.byName == nil {
		registered.byName = map[model.Algorithm]*AlgorithmDef{}
	}
	def := d
	registered.byName[d.Name] = &def
	return Algorithm{&def}
}

// String returns the API spelling of the algorithm.
func (a Algorithm) String() string {
	if a.def == nil {
		return "Algorithm(none)"
	}
	return string(a.def.Name)
}

// ParseAlgorithm returns the registered algorithm of an API spelling ("roundrobin",
// "leastconn", "source", "ring_hash", or one registered since). Matching is exact.
func ParseAlgorithm(s string) (Algorithm, error) {
	registered.mu.RLock()
	defer registered.mu.RUnlock()
	if d := registered.byName[model.Algorithm(s)]; d != nil {
		return Algorithm{d}, nil
	}
	return Algorithm{}, fmt.Errorf("unknown balancing algorithm %q", s)
}

// Eligible is the set of nodes a Picker chooses among: the pool's accept nodes that
// are not DOWN, or its backups when no accept node is eligible, in pool order.
type Eligible struct {
	nodes []Node   // the pool's nodes
	idx   []uint16 // pool indexes of the eligible ones
}

// Len returns the number of eligible nodes.
func (e Eligible) Len() int { return len(e.idx) }

// Node returns the j-th eligible node, 0 ≤ j < Len().
func (e Eligible) Node(j int) *Node { return &e.nodes[e.idx[j]] }

// weightsAndIDs returns the eligible nodes' weights and IDs.
func (e Eligible) weightsAndIDs() (weights, ids []int) {
	weights, ids = make([]int, len(e.idx)), make([]int, len(e.idx))
	for j, i := range e.idx {
		weights[j], ids[j] = e.nodes[i].Weight, e.nodes[i].ID
	}
	return weights, ids
}

// Query is one pick as a Picker sees it: the client and the pool's live state.
// It is passed by value and holds no allocation.
type Query struct {
	// Key is the client's HashAddr, for algorithms that map clients to nodes.
	Key uint64
	p   *Pool
	ex  int // pool index a retry must not return; -1 for none
}

// Turn returns the pool's pick counter and advances it: the next turn for
// algorithms that rotate (one atomic add, shared by every connection of the pool,
// so call it at most once per pick).
func (q Query) Turn() uint64 { return q.p.ctr.Add(1) - 1 }

// Usable reports whether n may be returned: it is not DOWN right now and not the
// node a retry excludes.
func (q Query) Usable(n *Node) bool { return q.usable(n.index) }

// usable is Usable by pool index.
func (q Query) usable(i uint16) bool { return q.p.usable(i, q.ex) }

// node returns the pool's i-th node.
func (q Query) node(i uint16) *Node { return &q.p.nodes[i] }

// Scan is the slow path of a stale table: it applies the eligibility rules to the
// live statuses, ignoring weights, and returns the first usable accept node from a
// position derived from start, else the first usable backup node, else nil.
func (q Query) Scan(start uint64) *Node { return q.p.scan(start, q.ex) }
