package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// scanCounter is a Backend that counts range scans, the reads whose cost grows with
// the state.
type scanCounter struct {
	store.Backend
	scans atomic.Int64
}

type scanCountingTx struct {
	store.Tx
	c *scanCounter
}

func (c *scanCounter) View(fn func(store.Tx) error) error {
	return c.Backend.View(func(tx store.Tx) error { return fn(scanCountingTx{tx, c}) })
}

func (t scanCountingTx) Scan(k store.Kind, prefix []byte, fn func(k, v []byte) error) error {
	t.c.scans.Add(1)
	return t.Tx.Scan(k, prefix, fn)
}

func TestAChangeIsAppliedWithoutReadingTheWholeState(t *testing.T) {
	cb := &scanCounter{}
	db := teststore.Over(t, "127.0.44.0/24", func(b store.Backend) store.Backend { cb.Backend = b; return cb })
	var nbs []model.NodeBalancer
	for i := range 20 {
		var nodes []model.Node
		for j := range 50 {
			nodes = append(nodes, node(fmt.Sprintf("n%d-%d", i, j), fmt.Sprintf("10.1.%d.%d:80", i, j+1), 50))
		}
		nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{config(model.ProtocolTCP, 80, nodes...)})
		if err != nil {
			t.Fatal(err)
		}
		nbs = append(nbs, nb)
	}
	p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, db) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 2*time.Second, "every listener", func() bool { return len(p.Listening()) == 20 })

	cfgs, _ := db.Configs(nbs[7].ID)
	nodes, _ := db.Nodes(nbs[7].ID, cfgs[0].ID)
	snap := func(id int) *snapshot {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.listeners[id].snap.Load()
	}
	other, _ := db.Configs(nbs[8].ID)
	beforeOther := snap(other[0].ID)
	scans := cb.scans.Load()
	if _, err := db.UpdateNode(nbs[7].ID, cfgs[0].ID, nodes[3].ID, func(n *model.Node) error { n.Mode = model.ModeDrain; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the drain to reach the data plane", func() bool {
		return snap(cfgs[0].ID).pool.Lookup(nodes[3].ID).Mode.String() == "drain"
	})
	if n := cb.scans.Load() - scans; n != 0 {
		t.Fatalf("one node's change made %d range scans of the store; want none (read the changed key only)", n)
	}
	if snap(other[0].ID) != beforeOther {
		t.Fatal("another config was rebuilt")
	}
}

// BenchmarkApplyOneNodeChange is one node's mode change in a config of 1,000 nodes:
// the mirror reads the node, the data plane rebuilds that config.
func BenchmarkApplyOneNodeChange(b *testing.B) {
	db := teststore.New(b, "127.0.44.0/24")
	var nodes []model.Node
	for j := range 1000 {
		nodes = append(nodes, node(fmt.Sprintf("node%d", j), fmt.Sprintf("127.0.45.%d:%d", 1+j%250, 10000+j/250), 50))
	}
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{config(model.ProtocolTCP, 80, nodes...)})
	if err != nil {
		b.Fatal(err)
	}
	cfgs, _ := db.Configs(nb.ID)
	ns, _ := db.Nodes(nb.ID, cfgs[0].ID)
	m := store.NewMirror(db)
	d, err := m.Load()
	if err != nil {
		b.Fatal(err)
	}
	p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
	defer p.Close()
	p.Apply(m, d)
	key := store.Ref{Kind: store.KindNode, Key: string(store.Key(cfgs[0].ID, ns[5].ID))}
	modes := []model.Mode{model.ModeDrain, model.ModeAccept}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		if _, err := db.UpdateNode(nb.ID, cfgs[0].ID, ns[5].ID, func(n *model.Node) error { n.Mode = modes[i%2]; return nil }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		d, err := m.Apply(store.Change{Revision: uint64(i + 2), Keys: []store.Ref{key}})
		if err != nil {
			b.Fatal(err)
		}
		p.Apply(m, d)
	}
}

// flakyReads is a Backend whose read transactions fail while failing is set.
type flakyReads struct {
	store.Backend
	failing atomic.Bool
}

func (f *flakyReads) View(fn func(store.Tx) error) error {
	if f.failing.Load() {
		return fmt.Errorf("injected read failure")
	}
	return f.Backend.View(fn)
}

func TestAChangeThatCannotBeReadIsAppliedOnceReadsWork(t *testing.T) {
	fb := &flakyReads{}
	db := teststore.Over(t, "127.0.44.0/24", func(b store.Backend) store.Backend { fb.Backend = b; return fb })
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"},
		[]model.ConfigWithNodes{config(model.ProtocolTCP, 80, node("n1", "127.0.45.1:9", 50))})
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, db) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 2*time.Second, "the listener", func() bool { return len(p.Listening()) == 1 })

	fb.failing.Store(true)
	if _, err := db.CreateConfig(nb.ID, config(model.ProtocolTCP, 81, node("n2", "127.0.45.2:9", 50))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the change arrives and cannot be read
	if n := len(p.Listening()); n != 1 {
		t.Fatalf("%d listeners while reads fail", n)
	}
	fb.failing.Store(false)
	waitFor(t, 3*time.Second, "the new config after reads work again", func() bool { return len(p.Listening()) == 2 })
}

func TestReconcileConvergesToAWholeState(t *testing.T) {
	p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
	defer p.Close()
	cfg := func(id, port int) model.ConfigWithNodes {
		c := config(model.ProtocolTCP, port, node("n", "127.0.46.9:9", 50))
		c.ID, c.NodeBalancerID = id, 1
		c.Nodes[0].ID = id * 10
		return c
	}
	state := func(cfgs ...model.ConfigWithNodes) store.State {
		return store.State{NodeBalancers: []store.NodeBalancerState{{
			NodeBalancer: model.NodeBalancer{ID: 1, IPv4: "127.0.46.1", Region: "local"}, Configs: cfgs}}}
	}
	p.Reconcile(state(cfg(1, 80), cfg(2, 81)))
	if l := p.Listening(); len(l) != 2 {
		t.Fatalf("listening %v, want configs 1 and 2", l)
	}
	p.Reconcile(state(cfg(2, 81)))
	if l := p.Listening(); len(l) != 1 || l[2].Port() != 81 {
		t.Fatalf("listening %v, want config 2 only", l)
	}
	p.Reconcile(store.State{})
	if l := p.Listening(); len(l) != 0 {
		t.Fatalf("listening %v after an empty state", l)
	}
}

// TestAModeOrWeightChangeReusesTheConfigsBackends: a change of some nodes' modes
// or weights builds the new pool from the previous snapshot (every backend and
// health handle kept, the reject node DOWN at once), and the pool serves the new
// settings; an address change still rebuilds that node's backend.
func TestAModeOrWeightChangeReusesTheConfigsBackends(t *testing.T) {
	e := newEnv(t, "127.0.46.0/24")
	var nodes []model.Node
	for j := range 5 {
		nodes = append(nodes, node(fmt.Sprintf("n%d", j), fmt.Sprintf("10.46.0.%d:80", j+1), 10))
	}
	c := config(model.ProtocolTCP, 80, nodes...)
	c.Check = model.CheckNone
	nb := e.create(c)
	cfgs, _ := e.db.Configs(nb.ID)
	id := cfgs[0].ID
	stored, _ := e.db.Nodes(nb.ID, id)
	snap := func() *snapshot {
		e.plane.mu.Lock()
		defer e.plane.mu.Unlock()
		return e.plane.listeners[id].snap.Load()
	}
	backends := func(s *snapshot) []any {
		var out []any
		for i := range s.pool.Len() {
			out = append(out, s.pool.Node(i).Data)
		}
		return out
	}
	before := snap()
	builds := func() (reused, rebuilt int) {
		e.plane.mu.Lock()
		defer e.plane.mu.Unlock()
		return e.plane.reused, e.plane.rebuilt
	}
	reused0, rebuilt0 := builds()
	handle := e.plane.opts.Health.Lookup(stored[1].ID)
	if _, err := e.db.UpdateNode(nb.ID, id, stored[1].ID, func(n *model.Node) error { n.Mode = model.ModeReject; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.UpdateNode(nb.ID, id, stored[3].ID, func(n *model.Node) error { n.Weight = 77; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "both changes in the pool", func() bool {
		s := snap()
		return s.pool.Lookup(stored[1].ID).Mode.String() == "reject" && s.pool.Lookup(stored[3].ID).Weight == 77
	})
	after := snap()
	if reused, rebuilt := builds(); reused == reused0 || rebuilt != rebuilt0 {
		t.Fatalf("pools built from the previous snapshot %d, from scratch %d; want only the first", reused-reused0, rebuilt-rebuilt0)
	}
	if !slices.Equal(backends(before), backends(after)) {
		t.Fatal("a mode and a weight change replaced backends")
	}
	if e.plane.opts.Health.Lookup(stored[1].ID) != handle || e.plane.opts.Health.Status(stored[1].ID) != model.StatusDown {
		t.Fatalf("the reject node: handle replaced or status %s, want DOWN", e.plane.opts.Health.Status(stored[1].ID))
	}
	for i := range after.pool.Len() {
		n := after.pool.Node(i)
		if n.State != n.Data.(*backend).health.State() || n.Addr != n.Data.(*backend).addr {
			t.Fatalf("node %d: the pool's state or address is not its backend's", n.ID)
		}
	}
	for range 50 { // the reject node is never picked
		if n := after.choose(netip.MustParseAddr("127.0.0.1"), uint64(time.Now().UnixNano()), nil); n != nil && n.ID == stored[1].ID {
			t.Fatal("a reject node was picked")
		}
	}

	// An address change: that node's backend is new, the others are kept.
	if _, err := e.db.UpdateNode(nb.ID, id, stored[2].ID, func(n *model.Node) error { n.Address = "10.46.0.99:80"; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the new address in the pool", func() bool {
		return snap().pool.Lookup(stored[2].ID).Addr.String() == "10.46.0.99:80"
	})
	if _, rebuilt := builds(); rebuilt == rebuilt0 {
		t.Fatal("an address change did not rebuild the pool from scratch")
	}
	moved := backends(snap())
	for i, b := range backends(after) {
		if (b == moved[i]) != (i != 2) {
			t.Fatalf("after an address change of node 2, backend %d kept: %v", i, b == moved[i])
		}
	}
}
