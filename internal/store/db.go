package store

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// DB is nodebalancer's typed view of a Backend: every method is one transaction and
// enforces the rules that span objects. Field validation of a single object is the
// caller's (model.Validate*) and happens before, or inside the mutate functions.
type DB struct {
	b     Backend
	pool  []netip.Prefix // the frontend pool's IPv4 networks
	pool6 []netip.Prefix // its IPv6 networks
	own   model.Listening
	local atomic.Pointer[[]netip.Addr] // the host's own addresses: own.Local, then SetLocal's
	now   func() time.Time
	o     Options

	indexOnce sync.Once
	indexErr  error
}

// Options configure a DB.
type Options struct {
	// FrontendPool is where NodeBalancer ipv4 addresses come from.
	FrontendPool []netip.Prefix
	// Own are the server's listeners besides its frontends (the API, /metrics) and
	// the host's addresses: no node may point at them, nor at a configured frontend.
	Own model.Listening
	// Now is the clock used for created/updated times; time.Now when nil.
	Now func() time.Time
	// MaxNodesPerConfig bounds the nodes of a config of a common NodeBalancer
	// (DefaultMaxNodesPerConfig when ≤ 0).
	MaxNodesPerConfig int
	// MaxNodesPerConfigPremium bounds them for a premium NodeBalancer
	// (DefaultMaxNodesPerConfigPremium when ≤ 0).
	MaxNodesPerConfigPremium int
}

// Linode's per-config node limits: 1,000 on the common plan, 2,000 on premium.
const (
	DefaultMaxNodesPerConfig        = model.MaxNodesPerCf
	DefaultMaxNodesPerConfigPremium = 2000
)

// New returns a DB over b.
func New(b Backend, o Options) *DB {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxNodesPerConfig <= 0 {
		o.MaxNodesPerConfig = DefaultMaxNodesPerConfig
	}
	if o.MaxNodesPerConfigPremium <= 0 {
		o.MaxNodesPerConfigPremium = DefaultMaxNodesPerConfigPremium
	}
	db := &DB{b: b, own: o.Own, now: o.Now, o: o}
	db.local.Store(&db.own.Local)
	for _, p := range o.FrontendPool {
		if p.Addr().Is4() {
			db.pool = append(db.pool, p)
		} else {
			db.pool6 = append(db.pool6, p)
		}
	}
	return db
}

// SetLocal replaces the host's own addresses (Options.Own.Local), which a wildcard
// listener of the server answers on: the server calls it when the host's addresses
// change, so a node pointing at an address added since the start is refused too.
// addrs must not be modified afterwards.
func (db *DB) SetLocal(addrs []netip.Addr) { db.local.Store(&addrs) }

// maxNodes is the per-config node limit of a NodeBalancer of type t.
func (db *DB) maxNodes(t model.Type) int {
	if t == model.TypePremium {
		return db.o.MaxNodesPerConfigPremium
	}
	return db.o.MaxNodesPerConfig
}

// tooManyNodes is the error of a config that would exceed its node limit.
func (db *DB) tooManyNodes(field string, t model.Type) error {
	return fieldErr(field, fmt.Sprintf("at most %d nodes per config (%s NodeBalancer)", db.maxNodes(t), typeName(t)))
}

func typeName(t model.Type) string {
	if t == "" {
		return string(model.TypeCommon)
	}
	return string(t)
}

// Backend returns the Backend under db.
func (db *DB) Backend() Backend { return db.b }

// Close closes the backend.
func (db *DB) Close() error { return db.b.Close() }

// Watch sends what changed after revision after; see Backend.Watch and Mirror.
func (db *DB) Watch(ctx context.Context, after uint64) <-chan Change { return db.b.Watch(ctx, after) }

// Since returns at once what changed after revision after, as far as the backend's
// feed has it, and whether anything did: what Watch sends next, without waiting
// for the watcher's goroutine to be scheduled. The data plane reads it right
// after an API write commits, so that the change is served before the API
// answers (Plane.CatchUp). A backend without a feed of its own to read reports
// nothing, and Watch alone carries its changes.
func (db *DB) Since(after uint64) (Change, bool) {
	if s, ok := db.b.(interface{ Since(uint64) (Change, bool) }); ok {
		return s.Since(after)
	}
	return Change{}, false
}

func (db *DB) stamp() time.Time { return db.now().UTC().Truncate(time.Second) }

// fieldErr wraps one field error as a model.Errors value.
func fieldErr(field, reason string) error { return model.Errors{{Field: field, Reason: reason}} }

// ---- NodeBalancers

// State is the whole desired state at one revision, what the data plane converges to.
type State struct {
	Revision      uint64
	NodeBalancers []NodeBalancerState
}

// NodeBalancerState is one NodeBalancer with its configs and their nodes.
type NodeBalancerState struct {
	model.NodeBalancer
	Configs []model.ConfigWithNodes
	// Firewall is the firewall attached to the NodeBalancer, nil when none is.
	Firewall *model.Firewall
}

// State reads the whole desired state in one transaction.
func (db *DB) State() (st State, err error) {
	err = db.b.View(func(tx Tx) error {
		nbs, err := scan[model.NodeBalancer](tx, KindNodeBalancer, nil)
		if err != nil {
			return err
		}
		guards, err := guardingFirewalls(tx)
		if err != nil {
			return err
		}
		for _, nb := range nbs {
			s := NodeBalancerState{NodeBalancer: nb, Firewall: guards[nb.ID]}
			cfgs, err := scan[model.Config](tx, KindConfig, Key(nb.ID))
			if err != nil {
				return err
			}
			for _, c := range cfgs {
				nodes, err := scan[model.Node](tx, KindNode, Key(c.ID))
				if err != nil {
					return err
				}
				s.Configs = append(s.Configs, model.ConfigWithNodes{Config: c, Nodes: nodes})
			}
			st.NodeBalancers = append(st.NodeBalancers, s)
		}
		st.Revision, err = tx.Revision()
		return err
	})
	return st, err
}

// ---- Tokens
