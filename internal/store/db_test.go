package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// pool is the frontend pool of the stores these tests open: three usable addresses.
const pool = "127.0.1.0/30"

func node(label, addr string) model.Node {
	n := model.NewNode()
	n.Label, n.Address = label, addr
	return n
}

func cfg(port int, nodes ...model.Node) model.ConfigWithNodes {
	c := model.NewConfig()
	c.Port = port
	return model.ConfigWithNodes{Config: c, Nodes: nodes}
}

func fieldsOf(err error) []string {
	var es model.Errors
	if !errors.As(err, &es) {
		return nil
	}
	var f []string
	for _, e := range es {
		f = append(f, e.Field)
	}
	return f
}

func TestCreateNodeBalancerWithConfigsAndNodes(t *testing.T) {
	db := teststore.New(t, pool)
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"},
		[]model.ConfigWithNodes{cfg(80, node("a1", "127.0.0.2:80"), node("a2", "127.0.0.3:80")), cfg(81)})
	if err != nil {
		t.Fatal(err)
	}
	if nb.ID != 1 || nb.Label != "balancer1" || nb.IPv4 != "127.0.1.1" || nb.Created.IsZero() {
		t.Fatalf("stored %+v", nb)
	}
	st, err := db.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.NodeBalancers) != 1 || len(st.NodeBalancers[0].Configs) != 2 || len(st.NodeBalancers[0].Configs[0].Nodes) != 2 {
		t.Fatalf("state %+v", st)
	}
	n := st.NodeBalancers[0].Configs[0].Nodes[1]
	if n.ConfigID != st.NodeBalancers[0].Configs[0].ID || n.NodeBalancerID != nb.ID || n.Label != "a2" {
		t.Fatalf("node %+v", n)
	}
}

func TestCreateIsAllOrNothing(t *testing.T) {
	db := teststore.New(t, pool)
	_, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, []model.ConfigWithNodes{cfg(80), cfg(80)})
	if got := fieldsOf(err); len(got) != 1 || got[0] != "configs[1].port" {
		t.Fatalf("want configs[1].port error, got %v", err)
	}
	st, _ := db.State()
	if len(st.NodeBalancers) != 0 {
		t.Fatal("a refused create must store nothing")
	}
	rev, _ := db.Backend().Revision()
	if rev != 0 {
		t.Fatalf("revision moved to %d on a refused write", rev)
	}
}

func TestLabelUniqueAndAddressAllocation(t *testing.T) {
	db := teststore.New(t, pool)
	a, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, nil); !equal(fieldsOf(err), "label") {
		t.Fatalf("duplicate label: %v", err)
	}
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "b", Region: "local", IPv4: a.IPv4}, nil); !equal(fieldsOf(err), "ipv4") {
		t.Fatalf("taken ipv4: %v", err)
	}
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "b", Region: "local", IPv4: "127.0.2.1"}, nil); !equal(fieldsOf(err), "ipv4") {
		t.Fatalf("ipv4 outside pool: %v", err)
	}
	b, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "b", Region: "local", IPv4: "127.0.1.2"}, nil)
	if err != nil || b.IPv4 != "127.0.1.2" {
		t.Fatalf("requested free ipv4: %v %v", b, err)
	}
	// The /30 pool has .1 and .2 usable (.0 network, .3 broadcast): it is now full.
	if _, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "c", Region: "local"}, nil); !equal(fieldsOf(err), "ipv4") {
		t.Fatalf("exhausted pool: %v", err)
	}
	// Deleting frees the address for the next one.
	if err := db.DeleteNodeBalancer(a.ID); err != nil {
		t.Fatal(err)
	}
	c, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "c", Region: "local"}, nil)
	if err != nil || c.IPv4 != a.IPv4 {
		t.Fatalf("freed address not reused: %v %v", c, err)
	}
	if c.ID == a.ID {
		t.Fatal("ids must never be reused")
	}
	if _, err := db.UpdateNodeBalancer(c.ID, func(n *model.NodeBalancer) error { n.Label = "b"; return nil }); !equal(fieldsOf(err), "label") {
		t.Fatalf("rename onto a used label: %v", err)
	}
}

func equal(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestPortUniqueAndCascadingDelete(t *testing.T) {
	db := teststore.New(t, pool)
	nb, _ := db.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, nil)
	c1, err := db.CreateConfig(nb.ID, cfg(80, node("n1", "127.0.0.2:80")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateConfig(nb.ID, cfg(80)); !equal(fieldsOf(err), "port") {
		t.Fatalf("duplicate port: %v", err)
	}
	c2, _ := db.CreateConfig(nb.ID, cfg(443))
	if _, err := db.UpdateConfig(nb.ID, c2.ID, func(c *model.Config) error { c.Port = 80; return nil }); !equal(fieldsOf(err), "port") {
		t.Fatalf("update onto used port: %v", err)
	}
	if _, err := db.UpdateConfig(nb.ID, c1.ID, func(c *model.Config) error { c.Port = 80; c.Algorithm = "leastconn"; return nil }); err != nil {
		t.Fatalf("a config keeps its own port: %v", err)
	}
	if _, err := db.Config(nb.ID+1, c1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("config under the wrong NodeBalancer: %v", err)
	}
	if err := db.DeleteNodeBalancer(nb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Nodes(nb.ID, c1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("nodes of a deleted config: %v", err)
	}
	if err := db.Backend().View(func(tx store.Tx) error {
		for _, k := range []store.Kind{store.KindConfig, store.KindNode} {
			if err := tx.Scan(k, nil, func(key, _ []byte) error { return errors.New("left behind in " + string(k)) }); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestRebuild(t *testing.T) {
	db := teststore.New(t, pool)
	nb, _ := db.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, []model.ConfigWithNodes{
		cfg(80, node("keep", "127.0.0.2:80"), node("drop", "127.0.0.3:80")), cfg(81, node("other", "127.0.0.4:80"))})
	st, _ := db.State()
	c := st.NodeBalancers[0].Configs[0]
	keep, drop := c.Nodes[0], c.Nodes[1]
	foreign := st.NodeBalancers[0].Configs[1].Nodes[0]

	keep.Weight = 200
	_, err := db.RebuildConfig(nb.ID, c.ID, func(*model.Config) error { return nil }, []model.Node{keep, foreign})
	if !equal(fieldsOf(err), "nodes[1].id") {
		t.Fatalf("foreign node id: %v", err)
	}
	if n, _ := db.Nodes(nb.ID, c.ID); len(n) != 2 || n[0].Weight != 50 {
		t.Fatalf("refused rebuild changed nodes: %+v", n)
	}

	out, err := db.RebuildConfig(nb.ID, c.ID, func(c *model.Config) error { c.Algorithm = "source"; return nil },
		[]model.Node{keep, node("new", "127.0.0.5:80")})
	if err != nil {
		t.Fatal(err)
	}
	if out.Algorithm != "source" || len(out.Nodes) != 2 || out.Nodes[0].ID != keep.ID || out.Nodes[0].Weight != 200 || out.Nodes[1].ID == 0 {
		t.Fatalf("rebuild result %+v", out)
	}
	if _, err := db.Node(nb.ID, c.ID, drop.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unlisted node must be deleted: %v", err)
	}
	if n, _ := db.Nodes(nb.ID, foreign.ConfigID); len(n) != 1 {
		t.Fatal("another config's nodes must be untouched")
	}
}

func TestWatchAndPersistence(t *testing.T) {
	dir := t.TempDir()
	db := teststore.Open(t, dir, "127.0.1.0/24")
	ctx, cancel := context.WithCancel(context.Background())
	w := db.Watch(ctx, 0)
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Label: "web", Region: "local"}, []model.ConfigWithNodes{cfg(80, node("n1", "127.0.0.2:80"))})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-w:
		if c.Revision != 1 || c.Reset {
			t.Fatalf("change %+v after first write", c)
		}
		kinds := map[store.Kind]int{}
		for _, k := range c.Keys {
			kinds[k.Kind]++
		}
		want := map[store.Kind]int{store.KindNodeBalancer: 1, store.KindConfig: 1, store.KindNode: 1}
		if !maps.Equal(kinds, want) {
			t.Fatalf("changed keys by kind %v, want %v (indexes are not state)", kinds, want)
		}
	case <-time.After(time.Second):
		t.Fatal("no watch notification")
	}
	if err := db.PutBlob("stats", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateToken(model.Token{Label: "t", Hash: "h"}); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-w:
		t.Fatalf("blob and token writes must not wake the data plane (%+v)", c)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if _, ok := <-w; ok {
		t.Fatal("watch channel must close when ctx ends")
	}
	db.Close()

	db2 := teststore.Open(t, dir, pool)
	got, err := db2.NodeBalancer(nb.ID)
	if err != nil || got.Label != "web" || got.IPv4 != nb.IPv4 || !got.Created.Equal(nb.Created) {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if blob, _ := db2.Blob("stats"); string(blob) != "x" {
		t.Fatalf("blob after reopen %q", blob)
	}
	if tok, err := db2.TokenByHash("h"); err != nil || tok.Label != "t" {
		t.Fatalf("token after reopen: %v", err)
	}
	next, _ := db2.CreateNodeBalancer(model.NodeBalancer{Label: "web2", Region: "local"}, nil)
	if next.ID != nb.ID+1 {
		t.Fatalf("ids must continue after a restart: got %d", next.ID)
	}
}

// TestNodesMustNotPointAtTheServer: every write that sets a node address refuses one
// that reaches the server's own listeners or a configured frontend, naming the
// field, and stores nothing; a config port that would open a frontend an existing
// node points at is refused too.
func TestNodesMustNotPointAtTheServer(t *testing.T) {
	db := teststore.New(t, pool, func(o *store.Options) {
		o.Own = model.Listening{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("0.0.0.0:9100")},
			Local: []netip.Addr{netip.MustParseAddr("10.9.9.9")}}
	})
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{cfg(80, node("ok", "127.0.0.2:80"))})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, _ := db.Configs(nb.ID)
	c := cfgs[0]
	nodes, _ := db.Nodes(nb.ID, c.ID)
	before, _ := db.State()
	unchanged := func(what string) {
		t.Helper()
		after, _ := db.State()
		after.Revision = before.Revision
		if fmtState(after) != fmtState(before) {
			t.Errorf("%s: a refused write changed the state", what)
		}
	}
	want := func(what string, err error, field string) {
		t.Helper()
		if f := fieldsOf(err); len(f) != 1 || f[0] != field {
			t.Errorf("%s: %v, want one error on %s", what, err, field)
		}
		unchanged(what)
	}
	// 0.0.0.0 and [::] reach the host itself: its loopback frontends and listeners.
	for _, addr := range []string{"127.0.0.1:8080", "127.3.3.3:9100", "10.9.9.9:9100", "127.0.1.1:80", "0.0.0.0:80", "[::]:8080", "[::ffff:127.0.1.1]:80"} {
		_, err := db.CreateNode(nb.ID, c.ID, node("self", addr))
		want("create node "+addr, err, "address")
	}
	_, err = db.UpdateNode(nb.ID, c.ID, nodes[0].ID, func(n *model.Node) error { n.Address = "127.0.0.1:8080"; return nil })
	want("update node", err, "address")
	_, err = db.RebuildConfig(nb.ID, c.ID, func(*model.Config) error { return nil },
		[]model.Node{nodes[0], node("loop", "127.0.1.1:80")})
	want("rebuild", err, "nodes[1].address")
	_, err = db.CreateConfig(nb.ID, cfg(81, node("a", "127.0.0.2:81"), node("self", "127.0.1.1:81")))
	want("create config pointing at itself", err, "nodes[1].address")
	_, err = db.CreateNodeBalancer(model.NodeBalancer{Region: "local"},
		[]model.ConfigWithNodes{cfg(80), cfg(81, node("a", "127.0.0.2:81")), cfg(82, node("a", "127.0.0.2:82"), node("b", "127.0.0.1:8080"))})
	want("create NodeBalancer", err, "configs[2].nodes[1].address")

	// A node may point at a port of the frontend address that no config uses...
	if _, err := db.CreateNode(nb.ID, c.ID, node("later", "127.0.1.1:90")); err != nil {
		t.Fatal(err)
	}
	before, _ = db.State()
	// ...until a config would open it.
	_, err = db.CreateConfig(nb.ID, cfg(90))
	want("create config on a node's address", err, "port")
	_, err = db.UpdateConfig(nb.ID, c.ID, func(c *model.Config) error { c.Port = 90; return nil })
	want("move a config onto a node's address", err, "port")
	if _, err := db.UpdateConfig(nb.ID, c.ID, func(c *model.Config) error { c.CheckAttempts = 4; return nil }); err != nil {
		t.Errorf("an update that keeps the port: %v", err)
	}
}

func fmtState(st store.State) string { return fmt.Sprintf("%+v", st) }

// TestConfigStoredBeforeUDPCheckPortReadsDefault: a config written before the field
// existed (no "udp_check_port" in its JSON) reads back with the default 80, through
// every read path.
func TestConfigStoredBeforeUDPCheckPortReadsDefault(t *testing.T) {
	dir := t.TempDir()
	db := teststore.Open(t, dir, pool)
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{cfg(80)})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := db.Configs(nb.ID)
	if err != nil || len(cfgs) != 1 {
		t.Fatal(cfgs, err)
	}
	db.Close()

	// Rewrite the stored config as an older version wrote it.
	b, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := store.Key(nb.ID, cfgs[0].ID)
	err = b.Update(func(tx store.Tx) error {
		raw, err := tx.Get(store.KindConfig, key)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		if _, ok := m["udp_check_port"]; !ok {
			t.Errorf("udp_check_port is not stored: %s", raw)
		}
		delete(m, "udp_check_port")
		raw, _ = json.Marshal(m)
		return tx.Put(store.KindConfig, key, raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	db = teststore.Open(t, dir, pool)
	c, err := db.Config(nb.ID, cfgs[0].ID)
	if err != nil || c.UDPCheckPort != 80 {
		t.Fatalf("Config = %+v, %v; want udp_check_port 80", c, err)
	}
	cfgs, err = db.Configs(nb.ID)
	if err != nil || cfgs[0].UDPCheckPort != 80 {
		t.Fatalf("Configs = %+v, %v", cfgs, err)
	}
	st, err := db.State()
	if err != nil || st.NodeBalancers[0].Configs[0].UDPCheckPort != 80 {
		t.Fatalf("State = %+v, %v", st, err)
	}
}

// TestSetLocalFollowsTheHostsAddresses: an address the host gains after the start
// is refused once the server says so, one it loses is allowed again.
func TestSetLocalFollowsTheHostsAddresses(t *testing.T) {
	db := teststore.New(t, pool, func(o *store.Options) {
		o.Own = model.Listening{Addrs: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:9100")}}
	})
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{cfg(80)})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, _ := db.Configs(nb.ID)
	if _, err := db.CreateNode(nb.ID, cfgs[0].ID, node("before", "10.8.8.8:9100")); err != nil {
		t.Fatalf("not yet the host's address: %v", err)
	}
	db.SetLocal([]netip.Addr{netip.MustParseAddr("10.8.8.8")})
	if _, err := db.CreateNode(nb.ID, cfgs[0].ID, node("after", "10.8.8.8:9100")); len(fieldsOf(err)) != 1 || fieldsOf(err)[0] != "address" {
		t.Fatalf("the host's address since SetLocal: %v, want a refusal on address", err)
	}
	db.SetLocal(nil)
	if _, err := db.CreateNode(nb.ID, cfgs[0].ID, node("again", "10.8.8.8:9100")); err != nil {
		t.Fatalf("no longer the host's address: %v", err)
	}
}
