package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// These tests replay, against the real server, every NodeBalancer-tree request that
// Linode's own clients make, in the shapes they send them:
//
//   - terraform-provider-linode v3.13.0 (linode/provider.go, linode/nb*), which calls
//     linodego, so its calls go through linodego with the options it builds;
//   - linode-cli's nodebalancers actions (built from Linode's OpenAPI description; its
//     tests/integration/nodebalancers), which send only the flags given, as raw JSON;
//   - linode_api4-python (linode_api4/objects/nodebalancer.py, groups/nodebalancer.py
//     and its test/integration/models/nodebalancer), also raw JSON, extra keys and all.
//
// Each asserts what the client then relies on: the fields it reads, their defaults,
// status codes and error fields. Where the live API does something this server does
// not yet (UDP configs, Cloud Firewalls), the test pins the clear refusal instead.

// rawClient sends requests as a client other than linodego does: an exact JSON body,
// the bearer token, Content-Type application/json.
type rawClient struct {
	t     *testing.T
	base  string
	token string
	ua    string
}

func (e *env) rawClient(ua string) rawClient {
	return rawClient{t: e.t, base: e.api, token: bootstrapToken, ua: ua}
}

// do sends one request and returns the status and the decoded JSON body; hdr is
// extra header name, value pairs.
func (c rawClient) do(method, path, body string, hdr ...string) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.ua)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("%s %s: %d, not a JSON object: %q", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// ok sends a request that must answer 200.
func (c rawClient) ok(method, path, body string) map[string]any {
	c.t.Helper()
	st, m := c.do(method, path, body)
	if st != http.StatusOK {
		c.t.Fatalf("%s %s %s: %d %v", method, path, body, st, m)
	}
	return m
}

// refused sends a request that must answer 400 with a reason for field containing
// reason.
func (c rawClient) refused(method, path, body, field, reason string) {
	c.t.Helper()
	st, m := c.do(method, path, body)
	if st != http.StatusBadRequest {
		c.t.Fatalf("%s %s %s: %d %v, want 400", method, path, body, st, m)
	}
	errs, _ := m["errors"].([]any)
	for _, e := range errs {
		em, _ := e.(map[string]any)
		if em["field"] == field && strings.Contains(fmt.Sprint(em["reason"]), reason) {
			return
		}
	}
	c.t.Fatalf("%s %s %s: %v, want field %q with %q", method, path, body, m, field, reason)
}

// has checks that m holds every field of want with the same value (JSON numbers are
// float64; a nil want only requires the key).
func has(t *testing.T, what string, m map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s: no field %q in %v", what, k, m)
			continue
		}
		if v != nil && fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("%s: %s = %v, want %v", what, k, got, v)
		}
	}
}

func idOf(m map[string]any) int { return int(m["id"].(float64)) }

func list(m map[string]any) []map[string]any {
	var out []map[string]any
	for _, x := range m["data"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

// TestTerraformProviderRequests replays terraform-provider-linode v3.13.0: the ping on
// every run, then apply (a NodeBalancer, an http config with checks and http_cookie, a
// tcp config with proxy_protocol v2, nodes), refresh and import (the same reads), an
// update of a node's mode and weight, the data sources, and destroy.
func TestTerraformProviderRequests(t *testing.T) {
	e := newEnv(t)
	lc, ctx := e.lc, e.ctx

	// providerConfigure: "Ping the API ... to verify the configuration works".
	if _, err := lc.ListTypes(ctx, linodego.NewListOptions(100, "")); err != nil {
		t.Fatalf("provider ping: %v", err)
	}

	// linode_nodebalancer Create: the options framework_resource.go builds.
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{
		Region: "local", Label: ptr("tf-web"), ClientConnThrottle: ptr(0), ClientUDPSessThrottle: ptr(0),
		Tags: []string{"terraform"},
	})
	if err != nil {
		t.Fatalf("create NodeBalancer: %v", err)
	}
	// Flatten reads every one of these; created/updated must parse, transfer be set.
	if nb.Label == nil || *nb.Label != "tf-web" || nb.Region != "local" || nb.Hostname == nil || nb.IPv4 == nil ||
		nb.Created == nil || nb.Updated == nil || nb.Transfer.In == nil || nb.Transfer.Out == nil || nb.Transfer.Total == nil ||
		len(nb.Tags) != 1 || nb.ClientUDPSessThrottle != 0 {
		t.Fatalf("created %+v", nb)
	}
	// Then safeListFirewalls and safeListVPCConfigs (a 404 would also do for VPCs).
	if fws, err := lc.ListNodeBalancerFirewalls(ctx, nb.ID, nil); err != nil || len(fws) != 0 {
		t.Fatalf("firewalls: %v, %v", fws, err)
	}
	if vpcs, err := lc.ListNodeBalancerVPCConfigs(ctx, nb.ID, nil); err != nil || len(vpcs) != 0 {
		t.Fatalf("vpcs: %v, %v", vpcs, err)
	}
	// firewall_id names a firewall that does not exist: a clear 400 naming it.
	if _, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", FirewallID: 7}); statusOf(err) != 400 ||
		!strings.Contains(err.Error(), "firewall_id") {
		t.Fatalf("create with firewall_id: %v", err)
	}

	// linode_nodebalancer_config Create: GetNodeBalancerConfigCreateOptions. Computed
	// attributes the user left unset are unknown at apply and go out as zero values
	// (dropped by omitempty); udp_check_port (default 80) and check_passive always go.
	a, b := e.httpBackend("a", 1), e.httpBackend("b", 2)
	httpCfg, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{
		Port: 8080, Protocol: "http", ProxyProtocol: "none", Algorithm: "roundrobin", Stickiness: "http_cookie",
		Check: "http", CheckPath: "/health", CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 2,
		UDPCheckPort: ptr(80), CheckPassive: ptr(true),
	})
	if err != nil {
		t.Fatalf("create http config: %v", err)
	}
	// FlattenNodeBalancerConfig dereferences nodes_status: it must be there.
	if httpCfg.NodesStatus == nil || httpCfg.UDPCheckPort != 80 || httpCfg.UDPSessionTimeout == 0 ||
		httpCfg.CipherSuite != "recommended" || httpCfg.Stickiness != "http_cookie" || httpCfg.NodeBalancerID != nb.ID {
		t.Fatalf("http config %+v", httpCfg)
	}
	tcpCfg, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{
		Port: 9000, Protocol: "tcp", ProxyProtocol: "v2", Check: "connection", UDPCheckPort: ptr(80), CheckPassive: ptr(true),
	})
	if err != nil || tcpCfg.ProxyProtocol != "v2" || tcpCfg.NodesStatus == nil || tcpCfg.UDPCheckPort != 80 {
		t.Fatalf("create tcp config: %+v, %v", tcpCfg, err)
	}

	// linode_nodebalancer_node Create: GetCreateOptions (subnet_id 0 dropped), then
	// safeGetVPCConfig with the node's vpc_config_id (0): a 404 means "none".
	var nodes []*linodego.NodeBalancerNode
	for i, be := range []*httpBackend{a, b} {
		n, err := lc.CreateNodeBalancerNode(ctx, nb.ID, httpCfg.ID, linodego.NodeBalancerNodeCreateOptions{
			Address: be.addr.String(), Label: fmt.Sprintf("web-%d", i+1), Weight: 50, Mode: "accept",
		})
		if err != nil {
			t.Fatalf("create node: %v", err)
		}
		if n.Status != "Unknown" && n.Status != "UP" {
			t.Fatalf("new node status %q", n.Status)
		}
		if _, err := lc.GetNodeBalancerVPCConfig(ctx, nb.ID, n.VPCConfigID); !linodego.IsNotFound(err) {
			t.Fatalf("vpc config of a node: %v, want 404", err)
		}
		nodes = append(nodes, n)
	}
	tcpNode, err := lc.CreateNodeBalancerNode(ctx, nb.ID, tcpCfg.ID, linodego.NodeBalancerNodeCreateOptions{
		Address: e.tcpBackend("t", 3).addr.String(), Label: "tcp-1", Weight: 10})
	if err != nil || tcpNode.Mode != "accept" {
		t.Fatalf("create tcp node: %+v, %v", tcpNode, err)
	}

	// Refresh and import: Read of each resource. A fresh import must read back what
	// the plan has (udp_check_port 80, not 0), or the next plan is not empty.
	got, err := lc.GetNodeBalancer(ctx, nb.ID)
	if err != nil || *got.Label != "tf-web" || got.ClientUDPSessThrottle != 0 {
		t.Fatalf("read NodeBalancer: %+v, %v", got, err)
	}
	for _, cfg := range []*linodego.NodeBalancerConfig{httpCfg, tcpCfg} {
		rc, err := lc.GetNodeBalancerConfig(ctx, nb.ID, cfg.ID)
		if err != nil || rc.UDPCheckPort != 80 || rc.Port != cfg.Port || rc.ProxyProtocol != cfg.ProxyProtocol ||
			rc.CheckPassive != true || rc.NodesStatus == nil {
			t.Fatalf("read config: %+v, %v", rc, err)
		}
	}
	waitFor(t, upWithin, "both http nodes UP", func() bool {
		for _, n := range nodes {
			rn, err := lc.GetNodeBalancerNode(ctx, nb.ID, httpCfg.ID, n.ID)
			if err != nil || rn.Status != "UP" {
				return false
			}
		}
		return true
	})
	if rc, _ := lc.GetNodeBalancerConfig(ctx, nb.ID, httpCfg.ID); rc.NodesStatus.Up != 2 || rc.NodesStatus.Down != 0 {
		t.Fatalf("nodes_status %+v, want 2 up", rc.NodesStatus)
	}

	// Update: a NodeBalancer change sends every field; a config change sends the whole
	// config (port included); a node change sends only what changed.
	got, err = lc.UpdateNodeBalancer(ctx, nb.ID, linodego.NodeBalancerUpdateOptions{
		Label: ptr("tf-web-2"), ClientConnThrottle: ptr(5), ClientUDPSessThrottle: ptr(3), Tags: &[]string{"terraform", "prod"}})
	if err != nil || *got.Label != "tf-web-2" || got.ClientConnThrottle != 5 || got.ClientUDPSessThrottle != 3 || len(got.Tags) != 2 {
		t.Fatalf("update NodeBalancer: %+v, %v", got, err)
	}
	uc, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, tcpCfg.ID, linodego.NodeBalancerConfigUpdateOptions{
		Port: 9000, Protocol: "tcp", ProxyProtocol: "v2", Algorithm: "leastconn", Stickiness: "table", Check: "connection",
		CheckInterval: 31, CheckTimeout: 30, CheckAttempts: 3, UDPCheckPort: ptr(1234), CheckPassive: ptr(true)})
	if err != nil || uc.UDPCheckPort != 1234 || uc.Algorithm != "leastconn" {
		t.Fatalf("update config: %+v, %v", uc, err)
	}
	un, err := lc.UpdateNodeBalancerNode(ctx, nb.ID, httpCfg.ID, nodes[1].ID, linodego.NodeBalancerNodeUpdateOptions{Mode: "drain", Weight: 100})
	if err != nil || un.Mode != "drain" || un.Weight != 100 || un.Label != "web-2" || un.Address != b.addr.String() {
		t.Fatalf("update node: %+v, %v", un, err)
	}

	// Data sources.
	if ds, err := lc.GetNodeBalancer(ctx, nb.ID); err != nil || ds.ID != nb.ID {
		t.Fatalf("data linode_nodebalancer: %v", err)
	}
	// linode_nodebalancers: API filters on label/ipv4/region, always +and and +order.
	for _, f := range []string{
		`{"+and":[{"+or":[{"label":"tf-web-2"}]}],"+order":"desc"}`,
		`{"+and":[{"+or":[{"region":"local"}]}],"+order":"asc","+order_by":"label"}`,
		`{"+and":[],"+order":"desc"}`,
	} {
		l, err := lc.ListNodeBalancers(ctx, linodego.NewListOptions(0, f))
		if err != nil || len(l) != 1 || l[0].ID != nb.ID {
			t.Fatalf("data linode_nodebalancers %s: %v, %v", f, l, err)
		}
	}
	if dc, err := lc.GetNodeBalancerConfig(ctx, nb.ID, httpCfg.ID); err != nil || dc.NodesStatus == nil {
		t.Fatalf("data linode_nodebalancer_config: %v", err)
	}
	// linode_nodebalancer_configs filters client-side: the API filter is empty.
	if l, err := lc.ListNodeBalancerConfigs(ctx, nb.ID, linodego.NewListOptions(0, `{"+and":[],"+order":"desc"}`)); err != nil || len(l) != 2 {
		t.Fatalf("data linode_nodebalancer_configs: %v, %v", l, err)
	}
	if dn, err := lc.GetNodeBalancerNode(ctx, nb.ID, httpCfg.ID, nodes[0].ID); err != nil || dn.Label != "web-1" {
		t.Fatalf("data linode_nodebalancer_node: %+v, %v", dn, err)
	}
	// linode_nodebalancer_types filters on label and transfer.
	if l, err := lc.ListNodeBalancerTypes(ctx, linodego.NewListOptions(0, `{"+and":[{"+or":[{"transfer":0}]}],"+order":"desc"}`)); err != nil || len(l) != 1 {
		t.Fatalf("data linode_nodebalancer_types: %v, %v", l, err)
	}
	// linode_nodebalancer_vpcs / linode_nodebalancer_vpc: none exist.
	if l, err := lc.ListNodeBalancerVPCConfigs(ctx, nb.ID, linodego.NewListOptions(0, `{"+and":[],"+order":"desc"}`)); err != nil || len(l) != 0 {
		t.Fatalf("data linode_nodebalancer_vpcs: %v, %v", l, err)
	}

	// Destroy, in dependency order; a second delete is a 404, which the provider
	// treats as already gone.
	for _, n := range nodes {
		if err := lc.DeleteNodeBalancerNode(ctx, nb.ID, httpCfg.ID, n.ID); err != nil {
			t.Fatalf("delete node: %v", err)
		}
	}
	if err := lc.DeleteNodeBalancerConfig(ctx, nb.ID, tcpCfg.ID); err != nil {
		t.Fatalf("delete config: %v", err)
	}
	if err := lc.DeleteNodeBalancer(ctx, nb.ID); err != nil {
		t.Fatalf("delete NodeBalancer: %v", err)
	}
	if err := lc.DeleteNodeBalancer(ctx, nb.ID); !linodego.IsNotFound(err) {
		t.Fatalf("second delete: %v, want 404", err)
	}
	if _, err := lc.GetNodeBalancerConfig(ctx, nb.ID, httpCfg.ID); !linodego.IsNotFound(err) {
		t.Fatalf("read of a destroyed config: %v, want 404", err)
	}
}

// statusOf is the HTTP status of a linodego error (-1 for other errors).
func statusOf(err error) int {
	if le, ok := err.(*linodego.Error); ok {
		return le.Code
	}
	return -1
}

// TestLinodeCLIRequests replays linode-cli's nodebalancers actions as its integration
// tests run them (tests/integration/nodebalancers): each sends only the flags given.
func TestLinodeCLIRequests(t *testing.T) {
	e := newEnv(t)
	c := e.rawClient("linode-cli/5.57.1")
	be := e.backendIP(1).String()

	// create --no-defaults: {} → "Request failed: 400", "region	region is required".
	c.refused("POST", "/v4/nodebalancers", `{}`, "region", "region is required")
	// Its fixtures add --firewall_id: a firewall that does not exist is refused by name.
	c.refused("POST", "/v4/nodebalancers", `{"region":"local","firewall_id":1234}`, "firewall_id", "does not exist")

	// create --region X (and --client_conn_throttle 20 in the udp fixtures).
	nb := c.ok("POST", "/v4/nodebalancers", `{"region":"local"}`)
	if !regexp.MustCompile(`^balancer[0-9]+$`).MatchString(fmt.Sprint(nb["label"])) ||
		!regexp.MustCompile(`^[0-9]+-[0-9]+-[0-9]+-[0-9]+\.ip\.linodeusercontent\.com$`).MatchString(fmt.Sprint(nb["hostname"])) {
		t.Fatalf("created %v: the CLI test expects balancerN and an ip.linodeusercontent.com hostname", nb)
	}
	has(t, "create", nb, map[string]any{"region": "local", "client_conn_throttle": 0, "ipv4": nil})
	nbPath := fmt.Sprintf("/v4/nodebalancers/%d", idOf(nb))
	has(t, "create throttle", c.ok("POST", "/v4/nodebalancers", `{"region":"local","client_conn_throttle":20}`),
		map[string]any{"client_conn_throttle": 20})

	// list, view, view of a missing id.
	if l := list(c.ok("GET", "/v4/nodebalancers", "")); len(l) != 2 {
		t.Fatalf("list: %v", l)
	}
	if v := c.ok("GET", nbPath, ""); !regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`).MatchString(fmt.Sprint(v["ipv4"])) {
		t.Fatalf("view ipv4 %v", v["ipv4"])
	}
	if st, _ := c.do("GET", "/v4/nodebalancers/535", ""); st != 404 {
		t.Fatalf("view 535: %d, want 404", st)
	}
	// update --label --client_conn_throttle (the OpenAPI example).
	has(t, "update", c.ok("PUT", nbPath, `{"label":"balancer12345","client_conn_throttle":0}`),
		map[string]any{"label": "balancer12345", "client_conn_throttle": 0})

	// config-create with no flags: the columns the CLI test reads,
	// "id,80,http,roundrobin,none,True,recommended,,".
	cliConfig := map[string]any{"protocol": "http", "algorithm": "roundrobin", "stickiness": "none",
		"check_passive": true, "cipher_suite": "recommended", "ssl_commonname": "", "ssl_fingerprint": ""}
	cf := c.ok("POST", nbPath+"/configs", `{}`)
	has(t, "config-create", cf, cliConfig)
	has(t, "config-create", cf, map[string]any{"port": 80, "check": "none", "udp_check_port": 80, "nodes_status": nil})
	cfPath := fmt.Sprintf("%s/configs/%d", nbPath, idOf(cf))
	for _, port := range []string{"82", "81", "83"} {
		has(t, "config-create --port "+port, c.ok("POST", nbPath+"/configs", `{"port":`+port+`}`), cliConfig)
	}
	// simple_nodebalancer_with_config: --port 81 --protocol http --algorithm leastconn
	// --check_path /test --check_body "it works" (on another NodeBalancer).
	other := c.ok("POST", "/v4/nodebalancers", `{"region":"local","client_conn_throttle":20}`)
	has(t, "config-create leastconn", c.ok("POST", fmt.Sprintf("/v4/nodebalancers/%d/configs", idOf(other)),
		`{"port":81,"protocol":"http","algorithm":"leastconn","check_path":"/test","check_body":"it works"}`),
		map[string]any{"algorithm": "leastconn", "check_path": "/test", "check_body": "it works", "check": "none"})
	// The OpenAPI example: every flag (https with a certificate).
	cert := testcert.New(t, tlsName)
	certPEM, keyPEM := cert.CertPEM, cert.KeyPEM
	full := fmt.Sprintf(`{"port":443,"protocol":"https","algorithm":"roundrobin","stickiness":"http_cookie","check":"http_body",
		"check_interval":90,"check_timeout":10,"check_attempts":3,"check_path":"/test","check_body":"it works","check_passive":true,
		"proxy_protocol":"none","ssl_cert":%q,"ssl_key":%q,"cipher_suite":"recommended"}`, certPEM, keyPEM)
	has(t, "config-create https", c.ok("POST", nbPath+"/configs", full),
		map[string]any{"ssl_cert": "<REDACTED>", "ssl_key": "<REDACTED>", "check": "http_body", "check_interval": 90})
	if l := list(c.ok("GET", nbPath+"/configs", "")); len(l) != 5 {
		t.Fatalf("configs-list: %d configs", len(l))
	}
	has(t, "config-view", c.ok("GET", cfPath, ""), cliConfig)

	// node-create --address --label --weight 100: "id,testnode1,ip:80,Unknown,100,accept".
	n := c.ok("POST", cfPath+"/nodes", fmt.Sprintf(`{"address":"%s:80","label":"testnode1","weight":100}`, be))
	has(t, "node-create", n, map[string]any{"label": "testnode1", "address": be + ":80", "status": "Unknown", "weight": 100, "mode": "accept"})
	nodePath := fmt.Sprintf("%s/nodes/%d", cfPath, idOf(n))
	// node-update --label, then --address with another port: still Unknown (check none).
	has(t, "node-update label", c.ok("PUT", nodePath, `{"label":"testnode1-edited"}`),
		map[string]any{"label": "testnode1-edited", "status": "Unknown", "weight": 100, "mode": "accept"})
	has(t, "node-update address", c.ok("PUT", nodePath, fmt.Sprintf(`{"address":"%s:23"}`, be)),
		map[string]any{"address": be + ":23", "status": "Unknown"})
	// A public address is refused naming address (live says "Must begin with 192.168").
	c.refused("PUT", nodePath, `{"address":"8.8.8.8:80"}`, "address", "outside the allowed backend ranges")
	has(t, "nodes-list", list(c.ok("GET", cfPath+"/nodes", ""))[0], map[string]any{"status": "Unknown"})
	has(t, "node-view", c.ok("GET", nodePath, ""), map[string]any{"label": "testnode1-edited"})
	// node-create with --mode (the OpenAPI example).
	has(t, "node-create mode", c.ok("POST", cfPath+"/nodes", fmt.Sprintf(`{"address":"%s:8080","label":"node54321","weight":50,"mode":"backup"}`, be)),
		map[string]any{"mode": "backup", "status": "Unknown"})

	// config-update --port 10700 --protocol tcp: "id,10700,tcp,roundrobin,none,True,recommended,,".
	has(t, "config-update tcp", c.ok("PUT", cfPath, `{"port":10700,"protocol":"tcp"}`),
		map[string]any{"port": 10700, "protocol": "tcp", "algorithm": "roundrobin", "stickiness": "none", "check_passive": true, "cipher_suite": "recommended"})
	// config-rebuild --port --protocol --algorithm --nodes.label --nodes.address --nodes.weight.
	rb := c.ok("POST", cfPath+"/rebuild", fmt.Sprintf(`{"port":10700,"protocol":"tcp","algorithm":"leastconn",
		"nodes":[{"label":"defaultnode1","address":"%s:80","weight":50}]}`, be))
	has(t, "config-rebuild", rb, map[string]any{"algorithm": "leastconn", "nodes_status": nil})
	if l := list(c.ok("GET", cfPath+"/nodes", "")); len(l) != 1 || l[0]["label"] != "defaultnode1" || l[0]["status"] != "Unknown" {
		t.Fatalf("nodes after rebuild: %v", l)
	}
	// The UDP actions of the CLI's tests: config-update to udp, then config-rebuild with ring_hash.
	has(t, "config-update udp", c.ok("PUT", cfPath, `{"port":80,"protocol":"udp","algorithm":"roundrobin","check_interval":80,"check_timeout":15,
		"check_attempts":2,"check_path":"/testUpdate","check_body":"OK","check_passive":false}`),
		map[string]any{"port": 80, "protocol": "udp", "algorithm": "roundrobin", "check_interval": 80, "check_passive": false,
			"udp_check_port": 80, "udp_session_timeout": 2})
	has(t, "config-rebuild udp", c.ok("POST", cfPath+"/rebuild", fmt.Sprintf(`{"port":80,"protocol":"udp","algorithm":"ring_hash",
		"nodes":[{"label":"defaultnode1","address":"%s:80","weight":50}]}`, be)),
		map[string]any{"protocol": "udp", "algorithm": "ring_hash"})

	// types, firewalls, stats.
	types := list(c.ok("GET", "/v4/nodebalancers/types", ""))
	if len(types) != 1 {
		t.Fatalf("types: %v", types)
	}
	has(t, "types", types[0], map[string]any{"id": "nodebalancer", "label": nil, "price": nil, "region_prices": nil, "transfer": nil})
	if l := list(c.ok("GET", nbPath+"/firewalls", "")); len(l) != 0 {
		t.Fatalf("firewalls: %v", l)
	}
	if l := list(c.ok("GET", nbPath+"/vpcs", "")); len(l) != 0 {
		t.Fatalf("vpcs-list: %v", l)
	}
	has(t, "stats", c.ok("GET", nbPath+"/stats", ""), map[string]any{"data": nil, "title": nil})

	// node-delete, config-delete, delete: each answers {}.
	for _, p := range []string{fmt.Sprintf("%s/nodes/%d", cfPath, idOf(list(c.ok("GET", cfPath+"/nodes", ""))[0])), cfPath, nbPath} {
		if m := c.ok("DELETE", p, ""); len(m) != 0 {
			t.Fatalf("delete %s: %v, want {}", p, m)
		}
	}
}

// TestLinodeAPI4PythonRequests replays linode_api4-python: NodeBalancerGroup.create,
// NodeBalancer.config_create / config_rebuild / statistics / firewalls / save,
// NodeBalancerConfig.node_create / save / nodes, NodeBalancerNode.save / delete, the
// region and configs relationships, and nodebalancers.types(), in the shapes its
// integration tests use them (test/integration/models/nodebalancer).
func TestLinodeAPI4PythonRequests(t *testing.T) {
	e := newEnv(t)
	c := e.rawClient("python-linode_api4/5.40.0")
	be := e.backendIP(1).String()

	// client.nodebalancer_create(region=..., label=..., firewall=fw.id): "firewall" is
	// not a field of the API; the live API ignores it, so does this one.
	nb := c.ok("POST", "/v4/nodebalancers", `{"region": "local", "label": "py-nb-0001", "firewall": 5678}`)
	has(t, "create", nb, map[string]any{"label": "py-nb-0001", "region": "local", "client_udp_sess_throttle": 0,
		"id": nil, "hostname": nil, "client_conn_throttle": nil, "created": nil, "updated": nil, "ipv4": nil,
		"ipv6": nil, "transfer": nil, "tags": nil, "locks": nil})
	nbPath := fmt.Sprintf("/v4/nodebalancers/%d", idOf(nb))
	// test_create_nb: client_udp_sess_throttle=5 is stored and read back.
	udp := c.ok("POST", "/v4/nodebalancers", `{"region": "local", "label": "py-nb-0002", "firewall": 5678, "client_udp_sess_throttle": 5}`)
	has(t, "create udp throttle", udp, map[string]any{"client_udp_sess_throttle": 5})

	// client.nodebalancers(NodeBalancer.label == "py-nb-0002"): X-Filter.
	st, found := c.do("GET", "/v4/nodebalancers", "", "X-Filter", `{"label": "py-nb-0002"}`)
	if l := list(found); st != 200 || len(l) != 1 || idOf(l[0]) != idOf(udp) {
		t.Fatalf("nodebalancers(filter): %d %v", st, found)
	}

	// nb.region is a slug relationship: GET /regions/{id}.
	has(t, "region", c.ok("GET", "/v4/regions/local", ""), map[string]any{"id": "local", "capabilities": "[NodeBalancers]",
		"status": "ok", "country": nil, "label": nil, "resolvers": nil, "site_type": nil, "monitors": nil, "placement_group_limits": nil})

	// nb.config_create(): no kwargs, an empty body.
	cf := c.ok("POST", nbPath+"/configs", `{}`)
	has(t, "config_create", cf, map[string]any{"port": 80, "protocol": "http", "udp_check_port": 80, "udp_session_timeout": nil,
		"nodes_status": nil, "nodebalancer_id": idOf(nb)})
	cfPath := fmt.Sprintf("%s/configs/%d", nbPath, idOf(cf))
	// config_create(protocol="udp", udp_check_port=1234): port 80 by default, beside the
	// http config on 80 (ports are unique per protocol family, as on Linode). On a tcp
	// config the udp_check_port round-trips too.
	has(t, "config_create udp", c.ok("POST", nbPath+"/configs", `{"protocol": "udp", "udp_check_port": 1234}`),
		map[string]any{"port": 80, "protocol": "udp", "udp_check_port": 1234, "udp_session_timeout": 2})
	tcp := c.ok("POST", nbPath+"/configs", `{"port": 81, "protocol": "tcp", "udp_check_port": 1234}`)
	has(t, "config_create udp_check_port", tcp, map[string]any{"udp_check_port": 1234})
	tcpPath := fmt.Sprintf("%s/configs/%d", nbPath, idOf(tcp))

	// config.udp_check_port = 4321; config.save(): a PUT of every mutable property
	// that is set (empty strings and None are left out: check_path, check_body,
	// ssl_cert, ssl_key here).
	loaded := c.ok("GET", tcpPath, "")
	save := map[string]any{}
	for _, k := range []string{"port", "protocol", "algorithm", "stickiness", "check", "check_interval", "check_timeout",
		"check_attempts", "check_path", "check_body", "check_passive", "udp_check_port", "ssl_cert", "ssl_key",
		"cipher_suite", "proxy_protocol"} {
		if v := loaded[k]; v != nil && v != "" {
			save[k] = v
		}
	}
	save["udp_check_port"] = 4321
	body, _ := json.Marshal(save)
	c.ok("PUT", tcpPath, string(body))
	has(t, "config.save", c.ok("GET", tcpPath, ""), map[string]any{"udp_check_port": 4321, "port": 81, "protocol": "tcp"})

	// nb.label = ...; nb.client_udp_sess_throttle = 5; nb.save(): label,
	// client_conn_throttle, tags, client_udp_sess_throttle.
	c.ok("PUT", nbPath, `{"label": "py-nb-0001-ThisNewLabel", "client_conn_throttle": 0, "tags": [], "client_udp_sess_throttle": 5}`)
	has(t, "nb.save", c.ok("GET", nbPath, ""), map[string]any{"label": "py-nb-0001-ThisNewLabel", "client_udp_sess_throttle": 5})

	// config.node_create("node_test", address, weight=50, mode="accept").
	n := c.ok("POST", cfPath+"/nodes", fmt.Sprintf(`{"label": "node_test", "address": "%s:80", "weight": 50, "mode": "accept"}`, be))
	has(t, "node_create", n, map[string]any{"label": "node_test", "address": be + ":80", "status": "Unknown",
		"id": nil, "config_id": idOf(cf), "nodebalancer_id": idOf(nb)})
	nodePath := fmt.Sprintf("%s/nodes/%d", cfPath, idOf(n))
	// config.nodes: the list; node.save(): label, address, weight, mode (tags is None).
	if l := list(c.ok("GET", cfPath+"/nodes", "")); len(l) != 1 || idOf(l[0]) != idOf(n) {
		t.Fatalf("config.nodes: %v", l)
	}
	c.ok("PUT", nodePath, fmt.Sprintf(`{"label": "node_test-ThisNewLabel", "address": "%s:80", "weight": 50, "mode": "accept"}`, be))
	has(t, "node.save", c.ok("GET", nodePath, ""), map[string]any{"label": "node_test-ThisNewLabel", "weight": 50, "mode": "accept"})

	// nb.configs: the derived list (http 80, udp 80, tcp 81).
	if l := list(c.ok("GET", nbPath+"/configs", "")); len(l) != 3 {
		t.Fatalf("nb.configs: %v", l)
	}
	// nb.config_rebuild(config_id, nodes, **kwargs).
	rb := c.ok("POST", cfPath+"/rebuild", fmt.Sprintf(`{"nodes": [{"id": %d, "address": "%s:80", "label": "node_test", "weight": 60, "mode": "accept"},
		{"address": "%s:81", "label": "node_two", "weight": 40, "mode": "backup"}], "port": 80, "protocol": "http"}`, idOf(n), be, be))
	has(t, "config_rebuild", rb, map[string]any{"id": idOf(cf), "port": 80})
	if l := list(c.ok("GET", cfPath+"/nodes", "")); len(l) != 2 {
		t.Fatalf("nodes after rebuild: %v", l)
	}
	// nb.statistics() raises unless the answer has "title"; nb.firewalls() reads data.
	has(t, "statistics", c.ok("GET", nbPath+"/stats", ""), map[string]any{"title": nil, "data": nil})
	if fw := c.ok("GET", nbPath+"/firewalls", ""); len(list(fw)) != 0 {
		t.Fatalf("firewalls: %v", fw)
	}
	// nodebalancers.types(): id, label, price, region_prices, transfer.
	ty := list(c.ok("GET", "/v4/nodebalancers/types", ""))
	if len(ty) != 1 {
		t.Fatalf("types: %v", ty)
	}
	has(t, "types", ty[0], map[string]any{"id": nil, "label": nil, "price": nil, "region_prices": nil, "transfer": nil})
	if pr, ok := ty[0]["price"].(map[string]any); !ok || pr["monthly"] == nil {
		t.Fatalf("types price %v: the test reads price.monthly", ty[0]["price"])
	}

	// node.delete(), then loading it is an ApiError (404).
	c.ok("DELETE", nodePath, "")
	if st, _ := c.do("GET", nodePath, ""); st != 404 {
		t.Fatalf("load of a deleted node: %d, want 404", st)
	}
	// config.delete(); nb.delete().
	c.ok("DELETE", cfPath, "")
	c.ok("DELETE", nbPath, "")
	if st, _ := c.do("GET", nbPath, ""); st != 404 {
		t.Fatalf("load of a deleted NodeBalancer: %d, want 404", st)
	}
}
