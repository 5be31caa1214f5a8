package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

func next(t *testing.T, w <-chan store.Change) store.Change {
	t.Helper()
	select {
	case c := <-w:
		return c
	case <-time.After(2 * time.Second):
		t.Fatal("no change")
	}
	return store.Change{}
}

func ref(k store.Kind, ids ...int) store.Ref {
	return store.Ref{Kind: k, Key: string(store.Key(ids...))}
}

func TestFeedCoalescesKeysOfALaggingReader(t *testing.T) {
	f := store.NewFeed(10, 100)
	f.Publish(11, []store.Ref{ref(store.KindNode, 1, 1)})
	f.Publish(12, []store.Ref{ref(store.KindNode, 1, 1), ref(store.KindNode, 1, 2)})
	f.Publish(13, []store.Ref{ref(store.KindConfig, 5, 1)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := next(t, f.Watch(ctx, 10))
	want := []store.Ref{ref(store.KindNode, 1, 1), ref(store.KindNode, 1, 2), ref(store.KindConfig, 5, 1)}
	if c.Revision != 13 || c.Reset || !reflect.DeepEqual(c.Keys, want) {
		t.Fatalf("got %+v, want revision 13 with each key once %v", c, want)
	}
	// From a revision within the log, only what came after.
	c = next(t, f.Watch(ctx, 12))
	if c.Revision != 13 || !reflect.DeepEqual(c.Keys, want[2:]) {
		t.Fatalf("from 12: %+v", c)
	}
}

func TestFeedResetsAReaderBehindItsLog(t *testing.T) {
	f := store.NewFeed(0, 3)
	for rev := uint64(1); rev <= 5; rev++ {
		f.Publish(rev, []store.Ref{ref(store.KindNode, 1, int(rev))})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if c := next(t, f.Watch(ctx, 0)); !c.Reset || c.Revision != 5 || len(c.Keys) != 0 {
		t.Fatalf("reader behind the log: %+v, want a Reset at 5", c)
	}
	if c := next(t, f.Watch(ctx, 3)); c.Reset || len(c.Keys) != 2 {
		t.Fatalf("reader within the log: %+v", c)
	}
	w := f.Watch(ctx, 5)
	select {
	case c := <-w:
		t.Fatalf("an up-to-date reader got %+v", c)
	case <-time.After(20 * time.Millisecond):
	}
	f.Publish(6, []store.Ref{ref(store.KindNodeBalancer, 9)})
	if c := next(t, w); c.Revision != 6 || len(c.Keys) != 1 {
		t.Fatalf("after a publish: %+v", c)
	}
	cancel()
	for range w {
	}
}

// follow keeps a Mirror current from db's feed, as the data plane does.
type follower struct {
	m   *store.Mirror
	w   <-chan store.Change
	all []store.Delta
}

func follow(t *testing.T, ctx context.Context, db *store.DB) *follower {
	m := store.NewMirror(db)
	d, err := m.Load()
	if err != nil {
		t.Fatal(err)
	}
	return &follower{m: m, w: db.Watch(ctx, d.Revision)}
}

// catchUp applies changes until the mirror reaches db's revision.
func (f *follower) catchUp(t *testing.T, db *store.DB) {
	t.Helper()
	want, _ := db.Backend().Revision()
	for f.m.Revision() < want {
		d, err := f.m.Apply(next(t, f.w))
		if err != nil {
			t.Fatal(err)
		}
		f.all = append(f.all, d)
	}
}

// mirrored returns the mirror's content in State's shape.
func mirrored(m *store.Mirror) []store.NodeBalancerState {
	var out []store.NodeBalancerState
	for _, v := range m.View() {
		s := store.NodeBalancerState{NodeBalancer: *v.NodeBalancer}
		for _, c := range v.Configs {
			s.Configs = append(s.Configs, model.ConfigWithNodes{Config: c.Config, Nodes: c.Nodes})
		}
		out = append(out, s)
	}
	return out
}

func TestMirrorFollowsTheStoreThroughRandomChanges(t *testing.T) {
	db := teststore.New(t, "127.0.1.0/24")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := follow(t, ctx, db)
	var err error
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 300 {
		st, _ := db.State()
		pickNB := func() *store.NodeBalancerState {
			if len(st.NodeBalancers) == 0 {
				return nil
			}
			return &st.NodeBalancers[rng.IntN(len(st.NodeBalancers))]
		}
		switch op := rng.IntN(10); {
		case op < 2 || len(st.NodeBalancers) == 0:
			_, err = db.CreateNodeBalancer(model.NodeBalancer{Region: "local"},
				[]model.ConfigWithNodes{cfg(80, node("a1", "127.0.0.2:80"), node("a2", "127.0.0.3:80"))})
		case op == 2:
			err = db.DeleteNodeBalancer(pickNB().ID)
		case op == 3:
			nb := pickNB()
			_, err = db.UpdateNodeBalancer(nb.ID, func(n *model.NodeBalancer) error { n.ClientConnThrottle = step % 20; return nil })
		case op == 4:
			_, err = db.CreateConfig(pickNB().ID, cfg(1000+step, node("c", "127.0.0.4:80")))
		default:
			nb := pickNB()
			if len(nb.Configs) == 0 {
				continue
			}
			c := nb.Configs[rng.IntN(len(nb.Configs))]
			switch {
			case op == 5 || len(c.Nodes) == 0:
				_, err = db.CreateNode(nb.ID, c.ID, node(fmt.Sprintf("n%d", step), "127.0.0.5:80"))
			case op == 6:
				err = db.DeleteNode(nb.ID, c.ID, c.Nodes[rng.IntN(len(c.Nodes))].ID)
			case op == 7:
				err = db.DeleteConfig(nb.ID, c.ID)
			default:
				n := c.Nodes[rng.IntN(len(c.Nodes))]
				_, err = db.UpdateNode(nb.ID, c.ID, n.ID, func(n *model.Node) error { n.Mode = model.ModeDrain; n.Weight = 1 + step%255; return nil })
			}
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if step%7 == 0 { // let changes pile up between catch-ups
			f.catchUp(t, db)
			st, _ = db.State()
			if got := mirrored(f.m); !reflect.DeepEqual(got, st.NodeBalancers) {
				t.Fatalf("step %d: mirror\n%+v\nstate\n%+v", step, got, st.NodeBalancers)
			}
		}
	}
}

func TestMirrorDeltaNamesOnlyTheChangedConfig(t *testing.T) {
	db := teststore.New(t, "127.0.1.0/24")
	var nbs []model.NodeBalancer
	for range 5 {
		nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"},
			[]model.ConfigWithNodes{cfg(80, node("a", "127.0.0.2:80"), node("b", "127.0.0.3:80")), cfg(81)})
		if err != nil {
			t.Fatal(err)
		}
		nbs = append(nbs, nb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := follow(t, ctx, db)
	cfgs, _ := db.Configs(nbs[2].ID)
	nodes, _ := db.Nodes(nbs[2].ID, cfgs[0].ID)
	before, _ := f.m.Config(cfgs[1].ID)
	if _, err := db.UpdateNode(nbs[2].ID, cfgs[0].ID, nodes[1].ID, func(n *model.Node) error { n.Mode = model.ModeDrain; return nil }); err != nil {
		t.Fatal(err)
	}
	f.catchUp(t, db)
	d := f.all[len(f.all)-1]
	if !slices.Equal(d.Configs, []int{cfgs[0].ID}) || len(d.NodeBalancers) != 0 {
		t.Fatalf("a node's mode change: delta %+v, want only config %d", d, cfgs[0].ID)
	}
	cs, _ := f.m.Config(cfgs[0].ID)
	if cs.Nodes[1].Mode != model.ModeDrain || cs.Nodes[0].Mode != model.ModeAccept {
		t.Fatalf("nodes after the change: %+v", cs.Nodes)
	}
	if after, _ := f.m.Config(cfgs[1].ID); after != before {
		t.Fatal("an untouched config was replaced")
	}
	// A NodeBalancer change touches its configs, and only them.
	if _, err := db.UpdateNodeBalancer(nbs[3].ID, func(n *model.NodeBalancer) error { n.ClientConnThrottle = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	f.catchUp(t, db)
	d = f.all[len(f.all)-1]
	want, _ := db.Configs(nbs[3].ID)
	if !slices.Equal(d.NodeBalancers, []int{nbs[3].ID}) || len(d.Configs) != 2 || d.Configs[0] != want[0].ID || d.Configs[1] != want[1].ID {
		t.Fatalf("a NodeBalancer change: delta %+v", d)
	}
	if err := db.DeleteNodeBalancer(nbs[4].ID); err != nil {
		t.Fatal(err)
	}
	f.catchUp(t, db)
	if _, ok := f.m.NodeBalancer(nbs[4].ID); ok {
		t.Fatal("deleted NodeBalancer still mirrored")
	}
	if len(f.m.View()) != 4 {
		t.Fatalf("%d NodeBalancers mirrored, want 4", len(f.m.View()))
	}
}

func TestFeedServesRevisionsWithGaps(t *testing.T) {
	// etcd's revision also advances with writes that are not state.
	f := store.NewFeed(10, 100)
	f.Publish(14, []store.Ref{ref(store.KindNode, 1, 1)})
	f.Publish(20, []store.Ref{ref(store.KindNode, 1, 2)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if c := next(t, f.Watch(ctx, 10)); c.Reset || c.Revision != 20 || len(c.Keys) != 2 {
		t.Fatalf("from 10: %+v, want both keys without a Reset", c)
	}
	if c := next(t, f.Watch(ctx, 17)); c.Reset || len(c.Keys) != 1 {
		t.Fatalf("from 17 (between published revisions): %+v", c)
	}
	if c := next(t, f.Watch(ctx, 9)); !c.Reset {
		t.Fatalf("from 9 (before the log): %+v, want a Reset", c)
	}
}

// noSince hides the backend's Since, as a Backend without a feed of its own would.
type noSince struct{ store.Backend }

// TestDBSinceReadsTheFeedAtOnce: DB.Since returns, in the caller's goroutine and as
// soon as a write committed, the Change that Watch would deliver next; nothing when
// the reader is up to date, or when the backend has no feed to read.
func TestDBSinceReadsTheFeedAtOnce(t *testing.T) {
	db := teststore.New(t, "127.0.1.0/30")
	rev, err := db.Backend().Revision()
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := db.Since(rev); ok {
		t.Fatalf("nothing written yet, got %+v", c)
	}
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := db.Since(rev)
	if !ok || c.Reset || c.Revision != rev+1 || !slices.Contains(c.Keys, ref(store.KindNodeBalancer, nb.ID)) {
		t.Fatalf("after a create: %+v, %v; want revision %d naming NodeBalancer %d", c, ok, rev+1, nb.ID)
	}
	if c, ok := db.Since(rev + 1); ok {
		t.Fatalf("up to date, got %+v", c)
	}
	other := store.New(noSince{db.Backend()}, store.Options{})
	if c, ok := other.Since(rev); ok {
		t.Fatalf("a backend without Since reported %+v", c)
	}
}
