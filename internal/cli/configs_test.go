package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/api"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// fixture creates a NodeBalancer with one config (port 8080, two nodes) and returns
// their ids as arguments.
func fixture(e *testEnv) (nb, cfg string) {
	e.t.Helper()
	n := e.object("nodebalancers", "create", "--label", "fixture")
	c := e.object("nodebalancers", "config-create", id(n), "--port", "8080", "--check", "connection",
		"--node", "label=web1,address=127.0.0.2:80", "--node", "label=web2, address=127.0.0.3:80, weight=20")
	return id(n), id(c)
}

func TestConfigCommandsRoundTrip(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb, cfg := fixture(e)

	ls := lines(e.ok("nodebalancers", "configs-list", nb))
	if h := strings.Fields(ls[0]); !slices.Equal(h, configColumns) || len(ls) != 2 {
		t.Fatalf("configs-list %q", ls)
	}
	// No health checker runs here: both nodes are "Unknown", neither up nor down.
	if f := strings.Fields(ls[1]); !slices.Equal(f, []string{cfg, "8080", "http", "roundrobin", "none", "connection", "0", "0"}) {
		t.Fatalf("configs-list row %q", f)
	}

	// Dashed spellings, a bool set to false, and only the given fields sent.
	up := e.object("nodebalancers", "config-update", nb, cfg, "--algorithm", "leastconn", "--check-passive=false", "--check-interval", "40")
	if up["algorithm"] != "leastconn" || up["check_passive"] != false || up["check_interval"] != 40.0 ||
		up["port"] != 8080.0 || up["check"] != "connection" {
		t.Fatalf("config-update %v", up)
	}
	if v := e.object("nodebalancers", "config-view", nb, cfg); v["algorithm"] != "leastconn" {
		t.Fatalf("config-view %v", v)
	}

	second := e.object("nodebalancers", "config-create", nb, "--port", "9090", "--protocol", "tcp", "--proxy_protocol", "v2")
	if second["proxy_protocol"] != "v2" || second["protocol"] != "tcp" {
		t.Fatalf("second config %v", second)
	}
	e.ok("nodebalancers", "config-delete", nb, id(second))
	if l := e.objects("nodebalancers", "configs-list", nb); len(l) != 1 || id(l[0]) != cfg {
		t.Fatalf("configs after delete: %v", l)
	}
}

func TestNodeCommandsRoundTrip(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb, cfg := fixture(e)

	ls := lines(e.ok("nodebalancers", "nodes-list", nb, cfg))
	if h := strings.Fields(ls[0]); !slices.Equal(h, nodeColumns) || len(ls) != 3 {
		t.Fatalf("nodes-list %q", ls)
	}
	if f := strings.Fields(ls[2]); !slices.Equal(f[1:], []string{"web2", "127.0.0.3:80", "20", "accept", "Unknown"}) {
		t.Fatalf("nodes-list row %q", f)
	}

	n := e.object("nodebalancers", "node-create", nb, cfg, "--label", "web3", "--address", "127.0.0.4:80", "--weight", "70", "--mode", "backup")
	if n["label"] != "web3" || n["weight"] != 70.0 || n["mode"] != "backup" {
		t.Fatalf("node-create %v", n)
	}
	up := e.object("nodebalancers", "node-update", nb, cfg, id(n), "--mode", "reject")
	// Only mode was sent; a node in mode reject shows DOWN.
	if up["mode"] != "reject" || up["weight"] != 70.0 || up["label"] != "web3" || up["status"] != "DOWN" {
		t.Fatalf("node-update %v", up)
	}
	if v := e.object("nodebalancers", "node-view", nb, cfg, id(n)); v["address"] != "127.0.0.4:80" {
		t.Fatalf("node-view %v", v)
	}
	if c := e.object("nodebalancers", "config-view", nb, cfg); c["nodes_status"].(map[string]any)["down"] != 1.0 {
		t.Fatalf("nodes_status after reject: %v", c["nodes_status"])
	}
	e.ok("nodebalancers", "node-delete", nb, cfg, id(n))
	if r := e.run("nodebalancers", "node-view", nb, cfg, id(n)); r.code != 1 || r.stderr != "Not found\n" {
		t.Fatalf("node-view after delete: %+v", r)
	}
}

func TestConfigRebuildReplacesTheNodeSet(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb, cfg := fixture(e)
	before := e.objects("nodebalancers", "nodes-list", nb, cfg)
	keep := id(before[0]) // web1; web2 is not listed and goes

	c := e.object("nodebalancers", "config-rebuild", nb, cfg, "--check-timeout", "5",
		"--node", "id="+keep+",weight=99",
		"--node", "label=web9,address=127.0.0.9:80,mode=drain")
	if c["check_timeout"] != 5.0 || c["port"] != 8080.0 {
		t.Fatalf("rebuild answer %v", c)
	}
	after := e.objects("nodebalancers", "nodes-list", nb, cfg)
	if len(after) != 2 {
		t.Fatalf("nodes after rebuild: %v", after)
	}
	if id(after[0]) != keep || after[0]["label"] != "web1" || after[0]["weight"] != 99.0 || after[0]["address"] != "127.0.0.2:80" {
		t.Fatalf("kept node %v: weight changed, the rest kept", after[0])
	}
	if after[1]["label"] != "web9" || after[1]["mode"] != "drain" || after[1]["weight"] != 50.0 {
		t.Fatalf("new node %v", after[1])
	}

	// A node id of another config is refused by the API, naming the node.
	r := e.run("nodebalancers", "config-rebuild", nb, cfg, "--node", "id=999")
	if r.code != 1 || !strings.Contains(r.stderr, "nodes[0].id: node 999 is not a node of config") {
		t.Fatalf("rebuild with a foreign id: %+v", r)
	}
	// Without --node nothing is sent: rebuild would delete every node.
	r = e.run("nodebalancers", "config-rebuild", nb, cfg, "--port", "81")
	if r.code != 2 || !strings.Contains(r.stderr, "give --node") {
		t.Fatalf("rebuild without --node: %+v", r)
	}
	if l := e.objects("nodebalancers", "nodes-list", nb, cfg); len(l) != 2 {
		t.Fatalf("refused rebuilds changed the nodes: %v", l)
	}
}

func TestHTTPSConfigReadsCertificateAndKeyFiles(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb := e.object("nodebalancers", "create", "--label", "tls-lb")
	cert := testcert.New(t, "shop.test")
	certPEM, keyPEM := cert.CertPEM, cert.KeyPEM
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, s := range map[string]string{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := e.object("nodebalancers", "config-create", id(nb), "--port", "8443", "--protocol", "https",
		"--ssl_cert", "@"+certFile, "--ssl-key", "@"+keyFile)
	if c["ssl_cert"] != model.Redacted || c["ssl_key"] != model.Redacted || c["ssl_commonname"] != "shop.test" {
		t.Fatalf("https config %v", c)
	}
	// The value itself works too.
	c = e.object("nodebalancers", "config-update", id(nb), id(c), "--ssl_cert", certPEM, "--ssl_key", keyPEM, "--cipher_suite", "legacy")
	if c["cipher_suite"] != "legacy" || c["ssl_commonname"] != "shop.test" {
		t.Fatalf("https config update %v", c)
	}
	r := e.run("nodebalancers", "config-update", id(nb), id(c), "--ssl_cert", "@"+filepath.Join(dir, "missing.pem"))
	if r.code != 2 || !strings.Contains(r.stderr, "--ssl_cert:") || !strings.Contains(r.stderr, "missing.pem") {
		t.Fatalf("missing cert file: %+v", r)
	}
}

func TestListsFollowEveryPage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb := e.object("nodebalancers", "create", "--label", "big")
	args := []string{"nodebalancers", "config-create", id(nb), "--port", "8080"}
	const n = 60
	for i := range n {
		args = append(args, "--node", fmt.Sprintf("label=n%03d,address=127.0.%d.%d:80", i, 2+i/200, 1+i%200))
	}
	cfg := e.object(args...)
	c, err := newClient(e.url, e.token)
	if err != nil {
		t.Fatal(err)
	}
	c.pageSize = 25 // the API's smallest page: three pages
	raws, err := c.list(context.Background(), nodesPath(int(nb["id"].(float64)), int(cfg["id"].(float64))))
	if err != nil {
		t.Fatal(err)
	}
	if len(raws) != n {
		t.Fatalf("listed %d nodes, want %d", len(raws), n)
	}
	for i, raw := range raws {
		obj, _ := decodeObject(raw)
		if want := fmt.Sprintf("n%03d", i); obj["label"] != want {
			t.Fatalf("node %d is %v, want %s", i, obj["label"], want)
		}
	}
}

// upStatus reports every node UP except those with an even id, DOWN.
type upStatus struct{}

func (upStatus) NodeStatus(_, nodeID int) model.NodeStatus {
	if nodeID%2 == 0 {
		return model.StatusDown
	}
	return model.StatusUp
}

func TestNodeStatusHasNoColourWhenNotATerminal(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *api.Options) { o.Status = upStatus{} })
	nb, cfg := fixture(e)
	out := e.ok("nodebalancers", "nodes-list", nb, cfg)
	if strings.Contains(out, "\x1b") {
		t.Fatalf("colour codes written to a pipe: %q", out)
	}
	ls := lines(out)
	if !strings.HasSuffix(ls[1], "  UP") || !strings.HasSuffix(ls[2], "  DOWN") {
		t.Fatalf("status column %q", ls)
	}
	ls = lines(e.ok("nodebalancers", "configs-list", nb))
	if f := strings.Fields(ls[1]); f[6] != "1" || f[7] != "1" {
		t.Fatalf("nodes up/down %q", f)
	}
}

// failedListener reports every config's port as busy.
type failedListener struct{}

func (failedListener) ListenerStatus(int) model.ListenerStatus {
	return model.ListenerStatus{State: model.ListenerFailed, Address: "127.0.1.1:8080", Error: "bind: address already in use"}
}

func TestConfigsListMarksAConfigThatCannotListen(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *api.Options) { o.Listeners = failedListener{} })
	nb, _ := fixture(e)
	ls := lines(e.ok("nodebalancers", "configs-list", nb))
	if h := strings.Fields(ls[0]); h[len(h)-1] != "listener.state" {
		t.Fatalf("configs-list header %q", ls[0])
	}
	if !strings.HasSuffix(ls[1], "  failed") {
		t.Fatalf("configs-list row %q does not end with the listener state", ls[1])
	}
	if got := colorStatus("failed"); got != ansiRed+"failed"+ansiReset {
		t.Errorf("colorStatus(failed) = %q", got)
	}
	if out := e.ok("nodebalancers", "configs-list", nb, "--format", "id,listener.error"); !strings.Contains(out, "bind: address already in use") {
		t.Errorf("--format listener.error: %q", out)
	}
}

func TestUDPConfigFlags(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	n := e.object("nodebalancers", "create", "--label", "udp-lb", "--client_udp_sess_throttle", "4")
	if n["client_udp_sess_throttle"] != 4.0 {
		t.Fatalf("create %v", n)
	}
	if up := e.object("nodebalancers", "update", id(n), "--client-udp-sess-throttle", "7"); up["client_udp_sess_throttle"] != 7.0 {
		t.Fatalf("update %v", up)
	}
	// A udp config on the port of a tcp config, with its own fields.
	e.object("nodebalancers", "config-create", id(n), "--port", "53", "--protocol", "tcp")
	c := e.object("nodebalancers", "config-create", id(n), "--port", "53", "--protocol", "udp", "--udp_check_port", "8053",
		"--algorithm", "ring_hash", "--stickiness", "source_ip", "--check", "connection")
	if c["protocol"] != "udp" || c["udp_check_port"] != 8053.0 || c["algorithm"] != "ring_hash" || c["stickiness"] != "source_ip" ||
		c["udp_session_timeout"] != float64(model.UDPSessionTimeout) {
		t.Fatalf("udp config-create %v", c)
	}
	if r := e.run("nodebalancers", "config-update", id(n), id(c), "--stickiness", "table"); r.code == 0 ||
		!strings.Contains(r.stderr, "stickiness") || !strings.Contains(r.stderr, "not available with protocol udp") {
		t.Fatalf("table on udp: exit %d, %q", r.code, r.stderr)
	}
}
