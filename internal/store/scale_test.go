package store_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// counting is a Backend that counts what transactions do, by kind.
type counting struct {
	store.Backend
	scans, gets map[store.Kind]int
}

type countingTx struct {
	store.Tx
	c *counting
}

func (c *counting) View(fn func(store.Tx) error) error {
	return c.Backend.View(func(tx store.Tx) error { return fn(countingTx{tx, c}) })
}

func (c *counting) Update(fn func(store.Tx) error) error {
	return c.Backend.Update(func(tx store.Tx) error { return fn(countingTx{tx, c}) })
}

func (t countingTx) Get(k store.Kind, key []byte) ([]byte, error) {
	t.c.gets[k]++
	return t.Tx.Get(k, key)
}

func (t countingTx) Scan(k store.Kind, prefix []byte, fn func(k, v []byte) error) error {
	t.c.scans[k]++
	return t.Tx.Scan(k, prefix, fn)
}

func (c *counting) reset() { c.scans, c.gets = map[store.Kind]int{}, map[store.Kind]int{} }

func TestCreateNodeBalancerDoesNotScanTheOthers(t *testing.T) {
	cb := &counting{}
	db := teststore.Over(t, "127.0.0.0/16", func(b store.Backend) store.Backend { cb.Backend = b; return cb })
	cb.reset()
	for i := range 300 {
		if _, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, nil); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	cb.reset()
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "last"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cb.scans[store.KindNodeBalancer] != 0 || cb.gets[store.KindAddress] > 3 || cb.gets[store.KindLabel] > 1 {
		t.Fatalf("creating the 301st NodeBalancer: scans %v, gets %v; want no scan and O(1) index reads", cb.scans, cb.gets)
	}
	if nb.IPv4 != "127.0.1.45" { // .0.0 is the network address; 300 before it
		t.Fatalf("ipv4 %s, want the next after the last handed out", nb.IPv4)
	}
	cb.reset()
	if _, err := db.UpdateNodeBalancer(nb.ID, func(n *model.NodeBalancer) error { n.Label = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if cb.scans[store.KindNodeBalancer] != 0 {
		t.Fatalf("a rename scanned the NodeBalancers: %v", cb.scans)
	}
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "renamed"}, nil); !equal(fieldsOf(err), "label") {
		t.Fatalf("the new label is taken: %v", err)
	}
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "last"}, nil); err != nil {
		t.Fatalf("the old label is free again: %v", err)
	}
}

// TestNodeWriteDoesNotScanTheState: the check that a node does not point at the
// server reads the address index, not every NodeBalancer and config, so a node
// write costs the same with 1 or 300 NodeBalancers (d81fc40 made it scan them all:
// 10 ms a write at 2,000 configs).
func TestNodeWriteDoesNotScanTheState(t *testing.T) {
	cb := &counting{}
	db := teststore.Over(t, "127.0.0.0/16", func(b store.Backend) store.Backend { cb.Backend = b; return cb })
	cb.reset()
	var last model.NodeBalancer
	for i := range 300 {
		nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"},
			[]model.ConfigWithNodes{cfg(80, node("a", "127.1.0.1:"+strconv.Itoa(1000+i))), cfg(81)})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		last = nb
	}
	cfgs, _ := db.Configs(last.ID)
	nodes, _ := db.Nodes(last.ID, cfgs[0].ID)
	cb.reset()
	if _, err := db.UpdateNode(last.ID, cfgs[0].ID, nodes[0].ID, func(n *model.Node) error { n.Weight = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateNode(last.ID, cfgs[0].ID, node("b", "127.1.0.2:80")); err != nil {
		t.Fatal(err)
	}
	if cb.scans[store.KindNodeBalancer] != 0 || cb.scans[store.KindConfig] != 0 {
		t.Fatalf("a node update and create scanned %v; want no scan of NodeBalancers or configs", cb.scans)
	}
	// A node on another NodeBalancer's frontend is still refused, through the index.
	first, _ := db.ListNodeBalancers()
	cb.reset()
	_, err := db.UpdateNode(last.ID, cfgs[0].ID, nodes[0].ID, func(n *model.Node) error { n.Address = first[0].IPv4 + ":81"; return nil })
	if !equal(fieldsOf(err), "address") || !strings.Contains(err.Error(), first[0].IPv4+":81") {
		t.Fatalf("node on another NodeBalancer's frontend: %v", err)
	}
	if cb.scans[store.KindNodeBalancer] != 0 || cb.scans[store.KindConfig] != 1 {
		t.Fatalf("the refused update scanned %v; want only that NodeBalancer's configs", cb.scans)
	}
}

func TestIndexesBuiltForAnOlderStore(t *testing.T) {
	dir := t.TempDir()
	db := teststore.Open(t, dir, pool)
	a, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Make it look like a store written before the indexes existed.
	err = db.Backend().Update(func(tx store.Tx) error {
		for _, k := range []store.Kind{store.KindLabel, store.KindAddress} {
			var keys []string
			tx.Scan(k, nil, func(key, _ []byte) error { keys = append(keys, string(key)); return nil })
			for _, key := range keys {
				if err := tx.Delete(k, []byte(key)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db2 := teststore.Open(t, dir, pool)
	if _, err := db2.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, nil); !equal(fieldsOf(err), "label") {
		t.Fatalf("duplicate label after the upgrade: %v", err)
	}
	b, err := db2.CreateNodeBalancer(model.NodeBalancer{Label: "b", Region: "local"}, nil)
	if err != nil || b.IPv4 == a.IPv4 {
		t.Fatalf("address after the upgrade: %v %v (a has %s)", b.IPv4, err, a.IPv4)
	}
}

func TestNodeLimitPerPlanType(t *testing.T) {
	db := teststore.New(t, "127.0.1.0/24", func(o *store.Options) { o.MaxNodesPerConfig, o.MaxNodesPerConfigPremium = 3, 5 })
	nodes := func(n int) []model.Node {
		var out []model.Node
		for i := range n {
			out = append(out, node("n"+strconv.Itoa(i), "127.0.0.2:80"))
		}
		return out
	}
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", Type: model.TypeCommon},
		[]model.ConfigWithNodes{cfg(80, nodes(4)...)}); !equal(fieldsOf(err), "configs[0].nodes") || !strings.Contains(err.Error(), "at most 3") {
		t.Fatalf("4 nodes on common: %v", err)
	}
	common, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", Type: model.TypeCommon}, []model.ConfigWithNodes{cfg(80, nodes(3)...)})
	if err != nil {
		t.Fatal(err)
	}
	premium, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local", Type: model.TypePremium}, []model.ConfigWithNodes{cfg(80, nodes(5)...)})
	if err != nil {
		t.Fatalf("5 nodes on premium: %v", err)
	}
	cc, _ := db.Configs(common.ID)
	if _, err := db.CreateNode(common.ID, cc[0].ID, node("x", "127.0.0.2:80")); err == nil || !strings.Contains(err.Error(), "at most 3") {
		t.Fatalf("4th node on common: %v", err)
	}
	pc, _ := db.Configs(premium.ID)
	if _, err := db.CreateNode(premium.ID, pc[0].ID, node("x", "127.0.0.2:80")); err == nil || !strings.Contains(err.Error(), "at most 5") {
		t.Fatalf("6th node on premium: %v", err)
	}
	if _, err := db.RebuildConfig(common.ID, cc[0].ID, func(*model.Config) error { return nil }, nodes(4)); !equal(fieldsOf(err), "nodes") {
		t.Fatalf("rebuild with 4 on common: %v", err)
	}
	if _, err := db.CreateConfig(premium.ID, cfg(81, nodes(6)...)); !equal(fieldsOf(err), "nodes") {
		t.Fatalf("config with 6 on premium: %v", err)
	}
}
