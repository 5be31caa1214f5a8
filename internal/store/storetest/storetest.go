// Package storetest is the conformance suite every store.Backend passes: the same
// tests run against bbolt and against a real etcd, so that the DB above them
// behaves the same whichever store runs.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// Open returns two Backends on one fresh, empty store, as two hosts would see it
// (they may be the same value for a store only one process can open). Both are
// closed when the test ends.
type Open func(t *testing.T) (a, b store.Backend)

// Run runs the suite.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"ReadYourWritesAndScanOrder", testReadYourWrites},
		{"FailedUpdateWritesNothing", testRollback},
		{"NextIDUniqueAcrossWriters", testNextID},
		{"ReadModifyWriteLosesNoUpdate", testNoLostUpdate},
		{"ScanSeesNoPhantom", testNoPhantom},
		{"ConcurrentCreatesNeverDuplicate", testCreateStorm},
		{"WatchSendsStateKeysOnly", testWatch},
		{"MirrorFollowsTheOtherWriter", testMirror},
		{"LabelPortAndCascade", testRules},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

var pool = []netip.Prefix{netip.MustParsePrefix("127.0.64.0/22")}

func db(b store.Backend) *store.DB { return store.New(b, store.Options{FrontendPool: pool}) }

func testReadYourWrites(t *testing.T, open Open) {
	a, _ := open(t)
	k := store.KindBlob
	err := a.Update(func(tx store.Tx) error {
		for _, key := range []string{"b/2", "b/1", "c", "a"} {
			if err := tx.Put(k, []byte(key), []byte("v"+key)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Update(func(tx store.Tx) error {
		if err := tx.Put(k, []byte("b/0"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Delete(k, []byte("b/2")); err != nil {
			return err
		}
		if v, err := tx.Get(k, []byte("b/0")); err != nil || string(v) != "new" {
			return fmt.Errorf("own write: %q %v", v, err)
		}
		if v, err := tx.Get(k, []byte("b/2")); err != nil || v != nil {
			return fmt.Errorf("own delete: %q %v", v, err)
		}
		var keys []string
		err := tx.Scan(k, []byte("b/"), func(key, _ []byte) error { keys = append(keys, string(key)); return nil })
		if !slices.Equal(keys, []string{"b/0", "b/1"}) {
			return fmt.Errorf("scan in transaction: %q", keys)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	err = a.View(func(tx store.Tx) error {
		if v, err := tx.Get(k, []byte("missing")); err != nil || v != nil {
			return fmt.Errorf("missing key: %q %v", v, err)
		}
		return tx.Scan(k, nil, func(key, _ []byte) error { keys = append(keys, string(key)); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"a", "b/0", "b/1", "c"}) {
		t.Fatalf("scan: %q", keys)
	}
	// A Scan stops with its callback's error, unchanged.
	stop := errors.New("stop")
	if err := a.View(func(tx store.Tx) error {
		return tx.Scan(k, nil, func(_, _ []byte) error { return stop })
	}); !errors.Is(err, stop) {
		t.Fatalf("scan error: %v", err)
	}
}

func testRollback(t *testing.T, open Open) {
	a, b := open(t)
	boom := errors.New("boom")
	rev0, err := a.Revision()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(func(tx store.Tx) error {
		if err := tx.Put(store.KindNodeBalancer, store.Key(1), []byte(`{}`)); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	if err := b.View(func(tx store.Tx) error {
		v, err := tx.Get(store.KindNodeBalancer, store.Key(1))
		if v != nil {
			return errors.New("a failed update was committed")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rev1, err := a.Revision()
	if err != nil || rev1 != rev0 {
		t.Fatalf("revision moved from %d to %d (%v) on a failed update", rev0, rev1, err)
	}
}

func testNextID(t *testing.T, open Open) {
	a, b := open(t)
	const per = 40
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		be := []store.Backend{a, b}[w%2]
		wg.Go(func() {
			for range per {
				var id int
				if err := be.Update(func(tx store.Tx) error {
					var err error
					id, err = tx.NextID(store.KindToken)
					return err
				}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if seen[id] {
					errs <- fmt.Errorf("id %d handed out twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != 4*per {
		t.Fatalf("%d ids for %d calls", len(seen), 4*per)
	}
}

// testNoLostUpdate increments one value from four writers on two backends: each
// increment reads the value and writes it plus one, and none is lost.
func testNoLostUpdate(t *testing.T, open Open) {
	a, b := open(t)
	const per = 25
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		be := []store.Backend{a, b}[w%2]
		wg.Go(func() {
			for range per {
				if err := be.Update(func(tx store.Tx) error {
					v, err := tx.Get(store.KindBlob, []byte("counter"))
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(v))
					return tx.Put(store.KindBlob, []byte("counter"), []byte(strconv.Itoa(n+1)))
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var got []byte
	if err := b.View(func(tx store.Tx) error {
		var err error
		got, err = tx.Get(store.KindBlob, []byte("counter"))
		return err
	}); err != nil || string(got) != strconv.Itoa(4*per) {
		t.Fatalf("counter %q (%v), want %d", got, err, 4*per)
	}
}

// testNoPhantom has writers that each add a key only while a scan finds fewer than
// limit keys: a key another writer adds under the scanned prefix meanwhile must
// make the transaction conflict, so the limit holds.
func testNoPhantom(t *testing.T, open Open) {
	a, b := open(t)
	const limit = 10
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		be := []store.Backend{a, b}[w%2]
		wg.Go(func() {
			for i := range limit {
				if err := be.Update(func(tx store.Tx) error {
					n := 0
					if err := tx.Scan(store.KindBlob, []byte("slot/"), func(_, _ []byte) error { n++; return nil }); err != nil {
						return err
					}
					if n >= limit {
						return nil
					}
					return tx.Put(store.KindBlob, []byte(fmt.Sprintf("slot/%d/%d", w, i)), []byte("x"))
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	if err := a.View(func(tx store.Tx) error {
		return tx.Scan(store.KindBlob, []byte("slot/"), func(_, _ []byte) error { n++; return nil })
	}); err != nil || n != limit {
		t.Fatalf("%d keys (%v) under a limit of %d", n, err, limit)
	}
}

// testCreateStorm creates NodeBalancers from two writers at once, half of them
// asking for the same labels and addresses: every acknowledged create is stored,
// and no id, label or address is stored twice.
func testCreateStorm(t *testing.T, open Open) {
	a, b := open(t)
	dbs := []*store.DB{db(a), db(b)}
	const per = 25
	type made struct{ nb model.NodeBalancer }
	var mu sync.Mutex
	var acked []made
	var wg sync.WaitGroup
	unexpected := make(chan error, 4)
	for w := range 4 {
		d := dbs[w%2]
		wg.Go(func() {
			for i := range per {
				nb := model.NodeBalancer{Region: "local"}
				if i%2 == 0 { // contended: both writers ask for this label and address
					nb.Label = "storm" + strconv.Itoa(i)
					nb.IPv4 = "127.0.67." + strconv.Itoa(1+i)
				}
				c := model.NewConfig()
				c.Port = 80
				n := model.NewNode()
				n.Label, n.Address = "n", "127.0.0.2:80"
				got, err := d.CreateNodeBalancer(nb, []model.ConfigWithNodes{{Config: c, Nodes: []model.Node{n}}})
				var es model.Errors
				if errors.As(err, &es) {
					continue // lost a contended label or address: refused, as it must be
				}
				if err != nil {
					unexpected <- err
					return
				}
				mu.Lock()
				acked = append(acked, made{nb: got})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(unexpected)
	for err := range unexpected {
		t.Fatal(err)
	}
	all, err := dbs[1].ListNodeBalancers()
	if err != nil {
		t.Fatal(err)
	}
	ids, labels, addrs := map[int]bool{}, map[string]bool{}, map[string]bool{}
	for _, nb := range all {
		if ids[nb.ID] || labels[nb.Label] || addrs[nb.IPv4] {
			t.Fatalf("duplicate in %+v", nb)
		}
		ids[nb.ID], labels[nb.Label], addrs[nb.IPv4] = true, true, true
	}
	for _, m := range acked {
		got, err := dbs[1].NodeBalancer(m.nb.ID)
		if err != nil || got.Label != m.nb.Label || got.IPv4 != m.nb.IPv4 {
			t.Fatalf("acknowledged %+v, stored %+v (%v)", m.nb, got, err)
		}
		cfgs, err := dbs[0].Configs(m.nb.ID)
		if err != nil || len(cfgs) != 1 {
			t.Fatalf("configs of %d: %v %v", m.nb.ID, cfgs, err)
		}
	}
	if len(all) != len(acked) {
		t.Fatalf("%d stored, %d acknowledged", len(all), len(acked))
	}
	// Each contended label went to exactly one writer.
	if want := 4*per - 3*(per+1)/2; len(acked) != want {
		t.Fatalf("%d creates acknowledged, want %d", len(acked), want)
	}
}

func next(t *testing.T, w <-chan store.Change) store.Change {
	t.Helper()
	select {
	case c := <-w:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change in 10 s")
	}
	return store.Change{}
}

func testWatch(t *testing.T, open Open) {
	a, b := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev, err := b.Revision()
	if err != nil {
		t.Fatal(err)
	}
	w := b.Watch(ctx, rev)
	if err := a.Update(func(tx store.Tx) error { return tx.Put(store.KindBlob, []byte("x"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	if err := a.Update(func(tx store.Tx) error {
		if err := tx.Put(store.KindNodeBalancer, store.Key(7), []byte(`{"id":7}`)); err != nil {
			return err
		}
		return tx.Put(store.KindNode, store.Key(3, 9), []byte(`{"id":9}`))
	}); err != nil {
		t.Fatal(err)
	}
	c := next(t, w)
	if c.Reset || c.Revision <= rev {
		t.Fatalf("change %+v after revision %d", c, rev)
	}
	want := []store.Ref{{Kind: store.KindNodeBalancer, Key: string(store.Key(7))}, {Kind: store.KindNode, Key: string(store.Key(3, 9))}}
	slices.SortFunc(c.Keys, func(x, y store.Ref) int { return len(x.Key) - len(y.Key) })
	if !slices.Equal(c.Keys, want) {
		t.Fatalf("keys %+v, want %+v", c.Keys, want)
	}
	now, err := a.Revision()
	if err != nil || now < c.Revision {
		t.Fatalf("revision %d (%v) behind the change's %d", now, err, c.Revision)
	}
	if err := a.Update(func(tx store.Tx) error { return tx.Delete(store.KindNode, store.Key(3, 9)) }); err != nil {
		t.Fatal(err)
	}
	c2 := next(t, w)
	if c2.Revision <= c.Revision || len(c2.Keys) != 1 || c2.Keys[0].Kind != store.KindNode {
		t.Fatalf("delete: %+v", c2)
	}
}

func testMirror(t *testing.T, open Open) {
	a, b := open(t)
	writer, reader := db(a), db(b)
	m := store.NewMirror(reader)
	d, err := m.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := reader.Watch(ctx, d.Revision)
	c := model.NewConfig()
	c.Port = 443
	nb, err := writer.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "m"}, []model.ConfigWithNodes{{Config: c}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := m.NodeBalancer(nb.ID); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mirror never saw the other writer's NodeBalancer")
		}
		if _, err := m.Apply(next(t, w)); err != nil {
			t.Fatal(err)
		}
	}
	v := m.View()
	if len(v) != 1 || len(v[0].Configs) != 1 || v[0].Configs[0].Config.Port != 443 {
		t.Fatalf("mirror %+v", v)
	}
}

func testRules(t *testing.T, open Open) {
	a, b := open(t)
	x, y := db(a), db(b)
	c := model.NewConfig()
	c.Port = 80
	nb, err := x.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "one"}, []model.ConfigWithNodes{{Config: c}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := y.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "one"}, nil); !isField(err, "label") {
		t.Fatalf("duplicate label: %v", err)
	}
	if _, err := y.CreateConfig(nb.ID, model.ConfigWithNodes{Config: c}); !isField(err, "port") {
		t.Fatalf("duplicate port: %v", err)
	}
	c.Port = 81
	c2, err := y.CreateConfig(nb.ID, model.ConfigWithNodes{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	n := model.NewNode()
	n.Label, n.Address = "n1", "127.0.0.2:80"
	if _, err := x.CreateNode(nb.ID, c2.ID, n); err != nil {
		t.Fatal(err)
	}
	// A node one host writes onto the frontend's address, or a wildcard, keeps the
	// other host from opening that port (the node address index is shared state).
	for i, addr := range []string{nb.IPv4 + ":90", "0.0.0.0:91", "[::ffff:" + nb.IPv4 + "]:92"} {
		w := model.NewNode()
		w.Label, w.Address = "w"+strconv.Itoa(i), addr
		if _, err := x.CreateNode(nb.ID, c2.ID, w); err != nil {
			t.Fatal(err)
		}
		c.Port = 90 + i
		if _, err := y.CreateConfig(nb.ID, model.ConfigWithNodes{Config: c}); !isField(err, "port") || !strings.Contains(err.Error(), "points at") {
			t.Fatalf("config on %s, which a node points at: %v", addr, err)
		}
	}
	if _, err := y.UpdateConfig(nb.ID, c2.ID, func(c *model.Config) error { c.Port = 91; return nil }); !isField(err, "port") {
		t.Fatalf("config moved onto a node's address: %v", err)
	}
	if err := y.DeleteConfig(nb.ID, c2.ID); err != nil {
		t.Fatal(err)
	}
	c.Port = 90
	if _, err := x.CreateConfig(nb.ID, model.ConfigWithNodes{Config: c}); err != nil {
		t.Fatalf("port 90 after its node's config went: %v", err)
	}
	if c2, err = y.CreateConfig(nb.ID, model.ConfigWithNodes{Config: c2}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.CreateNode(nb.ID, c2.ID, n); err != nil {
		t.Fatal(err)
	}
	if err := y.DeleteNodeBalancer(nb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Configs(nb.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("configs after delete: %v", err)
	}
	if nodes, err := x.Nodes(nb.ID, c2.ID); !errors.Is(err, store.ErrNotFound) || len(nodes) != 0 {
		t.Fatalf("nodes after delete: %v %v", nodes, err)
	}
	// The label is free again.
	if _, err := x.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "one"}, nil); err != nil {
		t.Fatal(err)
	}
}

func isField(err error, field string) bool {
	var es model.Errors
	if !errors.As(err, &es) {
		return false
	}
	for _, e := range es {
		if e.Field == field {
			return true
		}
	}
	return false
}
