package stats

import (
	"maps"
	"sync"
)

// Registry holds the Counters of every NodeBalancer, config and node the data plane
// serves. Lookups take a lock and happen when the data plane rebuilds a snapshot,
// never per connection: snapshots carry the *Counters they need.
type Registry struct {
	mu      sync.Mutex
	nbs     map[int]*Counters
	configs map[int]*Counters
	nodes   map[int]*Counters
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{nbs: map[int]*Counters{}, configs: map[int]*Counters{}, nodes: map[int]*Counters{}}
}

func getOrAdd(m map[int]*Counters, id int) *Counters {
	c := m[id]
	if c == nil {
		c = &Counters{}
		m[id] = c
	}
	return c
}

// NodeBalancer returns the counters of NodeBalancer id.
func (r *Registry) NodeBalancer(id int) *Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return getOrAdd(r.nbs, id)
}

// Config returns the counters of config id.
func (r *Registry) Config(id int) *Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return getOrAdd(r.configs, id)
}

// Node returns the counters of node id.
func (r *Registry) Node(id int) *Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return getOrAdd(r.nodes, id)
}

// Retain forgets the counters of every NodeBalancer, config and node not listed.
func (r *Registry) Retain(nbs, configs, nodes map[int]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range []struct {
		m    map[int]*Counters
		keep map[int]bool
	}{{r.nbs, nbs}, {r.configs, configs}, {r.nodes, nodes}} {
		for id := range x.m {
			if !x.keep[id] {
				delete(x.m, id)
			}
		}
	}
}

// ForgetNodeBalancer forgets the counters of NodeBalancer id.
func (r *Registry) ForgetNodeBalancer(id int) { r.forget(r.nbs, id) }

// ForgetConfig forgets the counters of config id.
func (r *Registry) ForgetConfig(id int) { r.forget(r.configs, id) }

// ForgetNode forgets the counters of node id.
func (r *Registry) ForgetNode(id int) { r.forget(r.nodes, id) }

func (r *Registry) forget(m map[int]*Counters, id int) {
	r.mu.Lock()
	delete(m, id)
	r.mu.Unlock()
}

// view is a consistent copy of the Registry's maps for one reader (the sampler or a
// scrape); the Counters themselves stay live.
type view struct {
	nbs, configs, nodes map[int]*Counters
}

// view copies the Registry's maps so a reader can walk them without holding the lock.
func (r *Registry) view() view {
	r.mu.Lock()
	defer r.mu.Unlock()
	return view{nbs: maps.Clone(r.nbs), configs: maps.Clone(r.configs), nodes: maps.Clone(r.nodes)}
}

// nodeBalancers copies the NodeBalancer counter map only.
func (r *Registry) nodeBalancers() map[int]*Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.nbs)
}

// lookupNodeBalancer returns the counters of NodeBalancer id, nil when the data plane
// has none; unlike NodeBalancer it never creates them.
func (r *Registry) lookupNodeBalancer(id int) *Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nbs[id]
}
