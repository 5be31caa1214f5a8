package balance

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// MaxNodes is the largest number of nodes a Pool accepts. Linode allows 1,000
// nodes per configuration (2,000 on premium plans); the bound keeps node
// indexes in 16 bits, which halves the size of the pick tables.
const MaxNodes = 4096

// MaxWeight is the largest node weight; the smallest is 1.
const MaxWeight = 255

// Node is one backend of a Pool. ID, Weight and Mode come from the
// configuration and are fixed for the life of the Pool; State is the live
// status and connection count, shared with other Pools holding the same node.
// Addr and Data are carried for the caller, so that the data plane can reach
// the backend and its own per-node data straight from the chosen *Node,
// without a map lookup on the hot path; the pool never reads them.
type Node struct {
	ID     int            // the API's node ID; must be positive and unique in the pool
	Weight int            // 1..MaxWeight
	Mode   Mode           // what the node accepts
	State  *State         // shared live state; NewPool creates one when nil
	Addr   netip.AddrPort // backend address, for the caller
	Data   any            // anything else the caller needs, for the caller

	index uint16 // position in Pool.nodes
	token string // opaque sticky-cookie value, see Token
}

// Token returns the node's opaque sticky-cookie value (the NB_SRVID cookie of
// http_cookie stickiness): CookieToken of the pool's cookie key and the node
// ID. It names the node without revealing its address and stays the same
// across configuration changes while the key and ID do.
func (n *Node) Token() string { return n.token }

// CookieToken returns the opaque sticky-cookie token of a node ID: the first
// 8 bytes of HMAC-SHA256(key, ID), in hex. Knowing tokens does not let a
// client derive the token of another ID without the key.
func CookieToken(key []byte, id int) string {
	return cookieToken(hmac.New(sha256.New, key), id)
}

// cookieToken is CookieToken with the keyed MAC made once: NewPool derives a
// thousand tokens from one key, and keying the MAC is half of each token's cost.
func cookieToken(m hash.Hash, id int) string {
	m.Reset()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	m.Write(b[:])
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0])[:8])
}

// Option adjusts how NewPool builds a Pool.
type Option func(*poolOptions)

type poolOptions struct {
	cookieKey []byte
	prev      *Pool
	noCookies bool
	adopt     bool
}

// Adopt makes NewPool keep the slice of nodes it is given instead of copying it: a
// caller that builds the slice for the pool and never touches it again saves a copy
// of every node.
func Adopt() Option {
	return func(o *poolOptions) { o.adopt = true }
}

// WithoutCookies builds a pool whose nodes have no cookie token: Token returns ""
// and ByToken finds nothing. A configuration without cookie stickiness never asks,
// and a thousand tokens cost a thousand MACs and a map.
func WithoutCookies() Option {
	return func(o *poolOptions) { o.noCookies = true }
}

// WithPrevious lets NewPool take the cookie tokens of nodes it shares (by ID) with
// prev, the pool it replaces, instead of deriving them again: a change to one node
// of a thousand then costs no MAC. prev must have been built with the same cookie
// key; a pool built with another is ignored.
func WithPrevious(prev *Pool) Option {
	return func(o *poolOptions) { o.prev = prev }
}

// WithCookieKey sets the secret key from which node cookie tokens are derived
// (see CookieToken). Use one key per balancer host, kept across restarts, so
// cookies stay valid. Without it tokens are derived from an empty key: still
// not the backend address, but guessable from the node ID.
func WithCookieKey(key []byte) Option {
	return func(o *poolOptions) { o.cookieKey = key }
}

// Pool is an immutable set of nodes and a balancing algorithm: one snapshot of
// one configuration's backends. The only things that change during its life
// are the nodes' States (status, active connections) and the pick tables that
// Refresh derives from the statuses. A configuration change builds a new Pool
// (sharing the States of the nodes it keeps) and swaps it in; connections in
// flight keep the Pool they started with.
//
// All methods are safe for concurrent use. Pick, PickExcluding, Choose,
// Honour, Lookup and ByToken never lock and never allocate.
type Pool struct {
	algo      Algorithm
	cookieKey []byte
	nodes     []Node
	byID      map[int]*Node
	byToken   map[string]*Node

	mu  sync.Mutex // serialises Refresh; readers never take it
	tab atomic.Pointer[table]

	_   [64]byte // keep the hot counter off the line that holds tab
	ctr atomic.Uint64
	_   [56]byte
}

// table is what Refresh derives from the node statuses: the eligible set and
// the algorithm's structure over it. It is immutable once published.
type table struct {
	down   []uint64 // bit per pool index: accept/backup nodes that were DOWN when built
	backup bool     // no accept node was eligible, so the backups are in use
	elig   []uint16 // pool indexes of the eligible nodes, in pool order
	picker Picker   // the algorithm's table over elig; nil when elig is empty
}

// NewPool builds a pool of the given nodes, which it copies, and computes its
// first pick tables from the nodes' current statuses. It refuses an unknown
// algorithm or mode, more than MaxNodes nodes, an ID that is not positive or
// appears twice, and a weight outside 1..MaxWeight. A node with a nil State
// gets a fresh one (status unknown). An empty pool is valid and picks nothing.
func NewPool(algo Algorithm, nodes []Node, opts ...Option) (*Pool, error) {
	if algo.def == nil {
		return nil, fmt.Errorf("new pool: no algorithm")
	}
	if len(nodes) > MaxNodes {
		return nil, fmt.Errorf("new pool: %d nodes, at most %d allowed", len(nodes), MaxNodes)
	}
	var o poolOptions
	for _, opt := range opts {
		opt(&o)
	}
	p := &Pool{
		algo:  algo,
		nodes: nodes,
		byID:  make(map[int]*Node, len(nodes)),
	}
	if !o.adopt {
		p.nodes = slices.Clone(nodes)
	}
	var mac hash.Hash
	if !o.noCookies {
		p.byToken = make(map[string]*Node, len(nodes))
		mac = hmac.New(sha256.New, o.cookieKey)
	}
	p.cookieKey = o.cookieKey
	prev := o.prev
	if prev != nil && !hmac.Equal(prev.cookieKey, o.cookieKey) {
		prev = nil
	}
	for i := range p.nodes {
		n := &p.nodes[i]
		switch {
		case n.ID <= 0:
			return nil, fmt.Errorf("new pool: node ID %d is not positive", n.ID)
		case n.Weight < 1 || n.Weight > MaxWeight:
			return nil, fmt.Errorf("new pool: node %d: weight %d outside 1..%d", n.ID, n.Weight, MaxWeight)
		case int(n.Mode) >= len(modeNames):
			return nil, fmt.Errorf("new pool: node %d: unknown mode %d", n.ID, n.Mode)
		case p.byID[n.ID] != nil:
			return nil, fmt.Errorf("new pool: node ID %d appears twice", n.ID)
		}
		if n.State == nil {
			n.State = new(State)
		}
		n.index = uint16(i)
		p.byID[n.ID] = n
		if o.noCookies {
			continue
		}
		if old := prev.lookup(n.ID); old != nil && old.token != "" {
			n.token = old.token
		} else {
			n.token = cookieToken(mac, n.ID)
		}
		p.byToken[n.token] = n
	}
	p.tab.Store(p.build())
	return p, nil
}

// Algorithm returns the pool's balancing algorithm.
func (p *Pool) Algorithm() Algorithm { return p.algo }

// Len returns the number of nodes in the pool, eligible or not.
func (p *Pool) Len() int { return len(p.nodes) }

// Node returns the i-th node, in the order given to NewPool.
func (p *Pool) Node(i int) *Node { return &p.nodes[i] }

// Lookup returns the node with the given ID, or nil if the pool has none.
func (p *Pool) Lookup(id int) *Node { return p.byID[id] }

// lookup is Lookup on a pool that may be nil.
func (p *Pool) lookup(id int) *Node {
	if p == nil {
		return nil
	}
	return p.byID[id]
}

// ByToken returns the node whose Token is tok, or nil. It is how the data
// plane turns an NB_SRVID cookie back into a node.
func (p *Pool) ByToken(tok string) *Node { return p.byToken[tok] }

// Available reports whether the pick tables hold any eligible node, as of the
// last Refresh. When it is false Pick returns nil.
func (p *Pool) Available() bool { return len(p.tab.Load().elig) > 0 }

// BackupsInUse reports whether, as of the last Refresh, no accept node is
// eligible and new traffic therefore goes to the backup nodes.
func (p *Pool) BackupsInUse() bool { return p.tab.Load().backup }

// Honour reports whether a sticky client pinned to n may keep using it: n
// belongs to this pool, is not DOWN right now, and is in accept or drain mode,
// or in backup mode while the backups are in use. A client whose pin is not
// honoured is balanced afresh and pinned again.
func (p *Pool) Honour(n *Node) bool {
	if n == nil || int(n.index) >= len(p.nodes) || &p.nodes[n.index] != n {
		return false
	}
	if n.State.Status() == StatusDown {
		return false
	}
	switch n.Mode {
	case ModeAccept, ModeDrain:
		return true
	case ModeBackup:
		return p.tab.Load().backup
	}
	return false
}

// Choose combines stickiness and balancing for one new connection. key is the
// client's HashAddr; pinned is the ID of the node the client is stuck to, or 0
// when it has none. It returns the pinned node when Honour allows, with
// repin false; otherwise a freshly picked node with repin true, telling the
// caller to record the new pin. It returns nil, false when nothing is
// eligible.
func (p *Pool) Choose(key uint64, pinned int) (n *Node, repin bool) {
	if pinned != 0 {
		if n := p.byID[pinned]; n != nil && p.Honour(n) {
			return n, false
		}
	}
	n = p.Pick(key)
	return n, n != nil
}

// Refresh rebuilds the pick tables if the set of eligible nodes has changed
// since they were last built, and reports whether it rebuilt them. Call it
// after any SetStatus that reported a change; calling it when nothing changed
// costs one atomic load per node and allocates nothing, so it may also run
// from a timer. Only a change between DOWN and not DOWN of an accept or
// backup node matters: unknown and UP are equally eligible, and reject and
// drain nodes are never in the tables.
func (p *Pool) Refresh() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stale(p.tab.Load()) {
		return false
	}
	p.tab.Store(p.build())
	return true
}

// stale reports whether any accept or backup node's DOWN-ness differs from
// what t was built with.
func (p *Pool) stale(t *table) bool {
	for i := range p.nodes {
		n := &p.nodes[i]
		if n.Mode != ModeAccept && n.Mode != ModeBackup {
			continue
		}
		down := n.State.Status() == StatusDown
		if down != (t.down[i/64]&(1<<(i%64)) != 0) {
			return true
		}
	}
	return false
}

// build derives a table from the nodes' statuses, reading each once.
func (p *Pool) build() *table {
	t := &table{down: make([]uint64, (len(p.nodes)+63)/64)}
	var primary, backups []uint16
	for i := range p.nodes {
		n := &p.nodes[i]
		if n.Mode != ModeAccept && n.Mode != ModeBackup {
			continue
		}
		if n.State.Status() == StatusDown {
			t.down[i/64] |= 1 << (i % 64)
			continue
		}
		if n.Mode == ModeAccept {
			primary = append(primary, uint16(i))
		} else {
			backups = append(backups, uint16(i))
		}
	}
	t.elig = primary
	if len(primary) == 0 {
		t.backup = true
		t.elig = backups
	}
	if len(t.elig) == 0 {
		return t
	}
	t.picker = p.algo.def.Build(Eligible{nodes: p.nodes, idx: t.elig})
	if t.picker == nil { // a broken Build must not panic every connection
		t.picker = scanPicker{}
	}
	return t
}

// scanPicker stands in for a Picker its algorithm's Build did not make: the scan,
// from a rotating start.
type scanPicker struct{}

func (scanPicker) Pick(q Query) *Node { return q.Scan(q.Turn()) }
