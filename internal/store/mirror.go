package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Mirror is an in-memory copy of the desired state (NodeBalancers, configs, nodes),
// kept current from the change feed: a change costs what it changed — the keys it
// names are read and decoded, and only the configs they touch are replaced. One
// follower (the data plane) calls Load and Apply; anyone may read it concurrently.
// Everything it hands out is immutable: a change replaces a ConfigState, never
// edits one.
type Mirror struct {
	db *DB

	mu      sync.RWMutex
	rev     uint64
	nbs     map[int]*model.NodeBalancer
	configs map[int]*ConfigState
	byNB    map[int]map[int]struct{} // NodeBalancer id → its config ids
	fws     map[int]*model.Firewall  // MirrorOf only: the state's firewalls by NodeBalancer
}

// ConfigState is one config with its NodeBalancer and its nodes (in id order), as
// the Mirror holds it. It is never modified once published.
type ConfigState struct {
	NodeBalancer *model.NodeBalancer
	Config       model.Config
	Nodes        []model.Node
}

// Delta names what a Load or Apply changed: NodeBalancers and configs written or
// removed. A config is listed when it, its node set or its NodeBalancer changed.
type Delta struct {
	Revision      uint64
	NodeBalancers []int
	Configs       []int
	// Firewalls is set when a firewall or a firewall device changed (and on a full
	// load): the guards of the NodeBalancers are to be armed again.
	Firewalls bool
}

// NewMirror returns an empty mirror of db; Load fills it.
func NewMirror(db *DB) *Mirror {
	return &Mirror{db: db, nbs: map[int]*model.NodeBalancer{}, configs: map[int]*ConfigState{},
		byNB: map[int]map[int]struct{}{}}
}

// MirrorOf returns a mirror holding st, for callers without a store (tests and
// benchmarks of the data plane); it has nothing to Load or Apply from.
func MirrorOf(st State) *Mirror {
	m := NewMirror(nil)
	m.rev = st.Revision
	m.fws = map[int]*model.Firewall{}
	for i := range st.NodeBalancers {
		nbs := &st.NodeBalancers[i]
		nb := nbs.NodeBalancer
		if nbs.Firewall != nil {
			m.fws[nb.ID] = nbs.Firewall
		}
		m.nbs[nb.ID] = &nb
		m.byNB[nb.ID] = map[int]struct{}{}
		for _, c := range nbs.Configs {
			m.configs[c.ID] = &ConfigState{NodeBalancer: &nb, Config: c.Config, Nodes: c.Nodes}
			m.byNB[nb.ID][c.ID] = struct{}{}
		}
	}
	return m
}

// Revision is the revision the mirror reflects.
func (m *Mirror) Revision() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// Config returns config id, or false when the state has no such config.
func (m *Mirror) Config(id int) (*ConfigState, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	cs, ok := m.configs[id]
	return cs, ok
}

// NodeBalancer returns NodeBalancer id, or false when the state has none.
func (m *Mirror) NodeBalancer(id int) (*model.NodeBalancer, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	nb, ok := m.nbs[id]
	return nb, ok
}

// NodeBalancerView is one NodeBalancer with its configs, in id order.
type NodeBalancerView struct {
	NodeBalancer *model.NodeBalancer
	Configs      []*ConfigState
}

// View returns every NodeBalancer with its configs, in id order. It costs
// O(NodeBalancers + configs) under the read lock; the nodes are not copied.
func (m *Mirror) View() []NodeBalancerView {
	m.mu.RLock()
	out := make([]NodeBalancerView, 0, len(m.nbs))
	for id, nb := range m.nbs {
		v := NodeBalancerView{NodeBalancer: nb, Configs: make([]*ConfigState, 0, len(m.byNB[id]))}
		for cid := range m.byNB[id] {
			v.Configs = append(v.Configs, m.configs[cid])
		}
		out = append(out, v)
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b NodeBalancerView) int { return a.NodeBalancer.ID - b.NodeBalancer.ID })
	for _, v := range out {
		slices.SortFunc(v.Configs, func(a, b *ConfigState) int { return a.Config.ID - b.Config.ID })
	}
	return out
}

// Load reads the whole state, replacing the mirror's; the Delta lists everything
// that was or now is there. It is how the follower starts, and how it recovers from
// a Change with Reset.
func (m *Mirror) Load() (Delta, error) {
	nbs := map[int]*model.NodeBalancer{}
	configs := map[int]*ConfigState{}
	byNB := map[int]map[int]struct{}{}
	var rev uint64
	err := m.db.b.View(func(tx Tx) error {
		var err error
		if rev, err = tx.Revision(); err != nil {
			return err
		}
		if err := tx.Scan(KindNodeBalancer, nil, func(k, v []byte) error {
			nb := new(model.NodeBalancer)
			if err := json.Unmarshal(v, nb); err != nil {
				return fmt.Errorf("decode %s %x: %w", KindNodeBalancer, k, err)
			}
			nbs[nb.ID] = nb
			byNB[nb.ID] = map[int]struct{}{}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Scan(KindConfig, nil, func(k, v []byte) error {
			cs := &ConfigState{}
			if err := json.Unmarshal(v, &cs.Config); err != nil {
				return fmt.Errorf("decode %s %x: %w", KindConfig, k, err)
			}
			if cs.NodeBalancer = nbs[cs.Config.NodeBalancerID]; cs.NodeBalancer != nil {
				configs[cs.Config.ID] = cs
				byNB[cs.Config.NodeBalancerID][cs.Config.ID] = struct{}{}
			}
			return nil
		}); err != nil {
			return err
		}
		// Nodes are keyed by (config id, node id): a scan meets each config's nodes
		// together and in id order.
		return tx.Scan(KindNode, nil, func(k, v []byte) error {
			var n model.Node
			if err := decodeNode(v, &n); err != nil {
				return fmt.Errorf("decode %s %x: %w", KindNode, k, err)
			}
			if cs := configs[n.ConfigID]; cs != nil {
				cs.Nodes = append(cs.Nodes, n)
			}
			return nil
		})
	})
	if err != nil {
		return Delta{}, err
	}
	m.mu.Lock()
	d := Delta{Revision: rev,
		NodeBalancers: union(m.nbs, nbs),
		Configs:       union(m.configs, configs),
		Firewalls:     true}
	m.rev, m.nbs, m.configs, m.byNB = rev, nbs, configs, byNB
	m.mu.Unlock()
	return d, nil
}

// union returns the keys of a and b, sorted.
func union[V any](a, b map[int]V) []int {
	out := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// read is what Apply read for one Change: the current value of each key, nil when
// it is gone.
type read struct {
	nbs     map[int]*model.NodeBalancer
	configs map[[2]int]*model.Config    // by (NodeBalancer id, config id)
	nodes   map[int]map[int]*model.Node // config id → node id → node
}

// Apply brings the mirror to c.Revision: it reads the keys c names (in one
// transaction) and replaces the configs they touch. A Reset reads everything.
func (m *Mirror) Apply(c Change) (Delta, error) {
	if c.Reset {
		return m.Load()
	}
	var d Delta
	err := m.db.b.View(func(tx Tx) (err error) {
		d, err = m.ApplyTx(tx, c)
		return err
	})
	return d, err
}

// ApplyTx is Apply reading the keys through tx, which may be a write transaction
// not yet committed (Plane.Stage): the mirror then holds c.Revision before the
// store does. c must not be a Reset.
func (m *Mirror) ApplyTx(tx Tx, c Change) (Delta, error) {
	r := read{nbs: map[int]*model.NodeBalancer{}, configs: map[[2]int]*model.Config{},
		nodes: map[int]map[int]*model.Node{}}
	err := func() error {
		for _, ref := range c.Keys {
			v, err := tx.Get(ref.Kind, []byte(ref.Key))
			if err != nil {
				return err
			}
			key := []byte(ref.Key)
			switch ref.Kind {
			case KindNodeBalancer:
				var nb *model.NodeBalancer
				if v != nil {
					nb = new(model.NodeBalancer)
					if err := json.Unmarshal(v, nb); err != nil {
						return fmt.Errorf("decode %s %x: %w", ref.Kind, key, err)
					}
				}
				r.nbs[lastID(key)] = nb
			case KindConfig:
				if len(key) != 16 {
					continue
				}
				var cf *model.Config
				if v != nil {
					cf = new(model.Config)
					if err := json.Unmarshal(v, cf); err != nil {
						return fmt.Errorf("decode %s %x: %w", ref.Kind, key, err)
					}
				}
				r.configs[[2]int{lastID(key[:8]), lastID(key)}] = cf
			case KindNode:
				if len(key) != 16 {
					continue
				}
				var n *model.Node
				if v != nil {
					n = new(model.Node)
					if err := decodeNode(v, n); err != nil {
						return fmt.Errorf("decode %s %x: %w", ref.Kind, key, err)
					}
				}
				cid := lastID(key[:8])
				if r.nodes[cid] == nil {
					r.nodes[cid] = map[int]*model.Node{}
				}
				r.nodes[cid][lastID(key)] = n
			}
		}
		return nil
	}()
	if err != nil {
		return Delta{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.apply(c.Revision, r)
	for _, ref := range c.Keys {
		if ref.Kind == KindFirewall || ref.Kind == KindFwDevice {
			d.Firewalls = true
			break
		}
	}
	return d, nil
}

// FirewallsByNodeBalancer reads the firewall attached to each NodeBalancer from the
// store (firewalls are few and change rarely, so the mirror does not keep them).
func (m *Mirror) FirewallsByNodeBalancer() (map[int]*model.Firewall, error) {
	if m.db == nil { // MirrorOf: the state it was made from said
		return m.fws, nil
	}
	return m.db.FirewallsByNodeBalancer()
}

// NodeBalancerIDs returns the ids of every NodeBalancer the mirror holds.
func (m *Mirror) NodeBalancerIDs() map[int]bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[int]bool, len(m.nbs))
	for id := range m.nbs {
		out[id] = true
	}
	return out
}

// apply installs what Apply read. m.mu is held.
func (m *Mirror) apply(rev uint64, r read) Delta {
	d := Delta{Revision: rev}
	touched := map[int]struct{}{}
	for id, nb := range r.nbs {
		d.NodeBalancers = append(d.NodeBalancers, id)
		if nb == nil {
			for cid := range m.byNB[id] {
				delete(m.configs, cid)
				touched[cid] = struct{}{}
			}
			delete(m.nbs, id)
			delete(m.byNB, id)
			continue
		}
		m.nbs[id] = nb
		if m.byNB[id] == nil {
			m.byNB[id] = map[int]struct{}{}
		}
		for cid := range m.byNB[id] {
			cs := *m.configs[cid]
			cs.NodeBalancer = nb
			m.configs[cid] = &cs
			touched[cid] = struct{}{}
		}
	}
	for k, cf := range r.configs {
		nbID, cid := k[0], k[1]
		touched[cid] = struct{}{}
		if cf == nil {
			delete(m.configs, cid)
			delete(m.byNB[nbID], cid)
			continue
		}
		nb := m.nbs[nbID]
		if nb == nil { // a config whose NodeBalancer is gone: nothing serves it
			continue
		}
		cs := ConfigState{NodeBalancer: nb, Config: *cf}
		if old := m.configs[cid]; old != nil {
			cs.Nodes = old.Nodes
		}
		m.configs[cid] = &cs
		m.byNB[nbID][cid] = struct{}{}
	}
	for cid, changes := range r.nodes {
		old := m.configs[cid]
		if old == nil {
			continue
		}
		touched[cid] = struct{}{}
		cs := *old
		cs.Nodes = patchNodes(old.Nodes, changes)
		m.configs[cid] = &cs
	}
	d.Configs = slices.Sorted(maps.Keys(touched))
	slices.Sort(d.NodeBalancers)
	m.rev = rev
	return d
}

// patchNodes returns a new node list: nodes with the changes applied (a nil change
// removes the node), in id order. It costs O(len(nodes) + len(changes)).
func patchNodes(nodes []model.Node, changes map[int]*model.Node) []model.Node {
	out := make([]model.Node, 0, len(nodes)+len(changes))
	done := make(map[int]bool, len(changes))
	for _, n := range nodes {
		c, ok := changes[n.ID]
		if !ok {
			out = append(out, n)
			continue
		}
		done[n.ID] = true
		if c != nil {
			out = append(out, *c)
		}
	}
	added := false
	for id, c := range changes {
		if c != nil && !done[id] {
			out = append(out, *c)
			added = true
		}
	}
	if added {
		slices.SortFunc(out, func(a, b model.Node) int { return a.ID - b.ID })
	}
	if len(out) == 0 {
		return nil // as a store read returns a config without nodes
	}
	return out
}
