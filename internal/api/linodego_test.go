package api

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// These tests drive the API over loopback with the real Linode client, the final
// word on what "Linode-compatible" means.

// serve starts the env's API on a loopback test server.
func (e *env) serve() *httptest.Server {
	srv := httptest.NewServer(e.api)
	e.t.Cleanup(srv.Close)
	return srv
}

// client returns a linodego client for srv using token.
func client(srv *httptest.Server, token string) *linodego.Client {
	c := linodego.NewClient(srv.Client())
	c.SetBaseURL(srv.URL)
	c.SetAPIVersion("v4")
	c.SetToken(token)
	c.SetRetryCount(0)
	return &c
}

func status(err error) int {
	var le *linodego.Error
	if errors.As(err, &le) {
		return le.Code
	}
	return -1
}

func ptr[T any](v T) *T { return &v }

func TestLinodegoNodeBalancerCRUD(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()

	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{
		Label: ptr("web-lb"), Region: "local", ClientConnThrottle: ptr(5), Tags: []string{"prod", "web"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if nb.ID == 0 || *nb.Label != "web-lb" || nb.Region != "local" || nb.ClientConnThrottle != 5 ||
		!slices.Equal(nb.Tags, []string{"prod", "web"}) || nb.Type != linodego.NBTypeCommon {
		t.Fatalf("created %+v", nb)
	}
	if *nb.IPv4 != "127.0.1.1" || *nb.Hostname != "127-0-1-1."+DefaultHostnameDomain || nb.IPv6 != nil {
		t.Fatalf("addresses: ipv4 %v hostname %v ipv6 %v", *nb.IPv4, *nb.Hostname, nb.IPv6)
	}
	if nb.Created == nil || time.Since(*nb.Created) > time.Minute || nb.Transfer.Total == nil || *nb.Transfer.Total != 0 {
		t.Fatalf("created %v transfer %+v", nb.Created, nb.Transfer)
	}

	// Defaults when the body names nothing: a generated label, the server's region.
	nb2, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if *nb2.Label != fmt.Sprintf("balancer%d", nb2.ID) || nb2.Region != "local" || nb2.Tags == nil || *nb2.IPv4 != "127.0.1.2" {
		t.Fatalf("defaults: %+v", nb2)
	}

	upd, err := lc.UpdateNodeBalancer(ctx, nb.ID, linodego.NodeBalancerUpdateOptions{
		Label: ptr("web-lb-2"), Tags: &[]string{"prod"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *upd.Label != "web-lb-2" || upd.ClientConnThrottle != 5 || !slices.Equal(upd.Tags, []string{"prod"}) {
		t.Fatalf("partial update changed the wrong fields: %+v", upd)
	}
	// The whole object read back and sent again (GetUpdateOptions) is accepted.
	if _, err := lc.UpdateNodeBalancer(ctx, nb.ID, upd.GetUpdateOptions()); err != nil {
		t.Fatalf("echoed update: %v", err)
	}
	got, err := lc.GetNodeBalancer(ctx, nb.ID)
	if err != nil || *got.Label != "web-lb-2" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	all, err := lc.ListNodeBalancers(ctx, nil)
	if err != nil || len(all) != 2 {
		t.Fatalf("list = %d, %v", len(all), err)
	}
	if _, err := lc.UpdateNodeBalancer(ctx, nb.ID, linodego.NodeBalancerUpdateOptions{Label: nb2.Label}); status(err) != 400 {
		t.Fatalf("duplicate label: %v", err)
	}
	if err := lc.DeleteNodeBalancer(ctx, nb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.GetNodeBalancer(ctx, nb.ID); !linodego.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	if err := lc.DeleteNodeBalancer(ctx, nb.ID); !linodego.IsNotFound(err) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestLinodegoConfigAndNodeCRUD(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("cfg-lb")})
	if err != nil {
		t.Fatal(err)
	}

	// linodego sends "port": 0 when Port is left unset: refused by name, as live.
	_, err = lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{})
	if status(err) != 400 || !strings.Contains(err.Error(), "[port] port must be between 1 and 65535") {
		t.Fatalf("create with port 0: %v", err)
	}
	// A create with only the port shows every other default.
	cf, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	want := linodego.NodeBalancerConfig{
		ID: cf.ID, Port: 80, Protocol: "http", ProxyProtocol: "none", Algorithm: "roundrobin", Stickiness: "none",
		Check: "none", CheckInterval: 31, CheckAttempts: 3, CheckPassive: true, CheckTimeout: 30,
		CipherSuite: "recommended", NodeBalancerID: nb.ID, NodesStatus: &linodego.NodeBalancerNodeStatus{},
		UDPCheckPort: 80, UDPSessionTimeout: model.UDPSessionTimeout,
	}
	if cf.NodesStatus == nil || *cf.NodesStatus != *want.NodesStatus {
		t.Fatalf("nodes_status %v", cf.NodesStatus)
	}
	cf.NodesStatus, want.NodesStatus = nil, nil
	if *cf != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", *cf, want)
	}

	cf, err = lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, linodego.NodeBalancerConfigUpdateOptions{
		Port: 8080, Protocol: "tcp", Check: "http", CheckPath: "/healthz", CheckInterval: 10, CheckTimeout: 5,
		CheckPassive: ptr(false), ProxyProtocol: "v2",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cf.Port != 8080 || cf.Protocol != "tcp" || cf.CheckPath != "/healthz" || cf.CheckPassive || cf.ProxyProtocol != "v2" || cf.Algorithm != "roundrobin" {
		t.Fatalf("updated %+v", cf)
	}
	// Port left 0 by the caller is refused (linodego always sends it) and changes
	// nothing; GetUpdateOptions carries the port over, as clients do.
	if _, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, linodego.NodeBalancerConfigUpdateOptions{Algorithm: "leastconn"}); status(err) != 400 ||
		!strings.Contains(err.Error(), "[port]") {
		t.Fatalf("update with port 0: %v", err)
	}
	upd := cf.GetUpdateOptions()
	upd.Algorithm = "leastconn"
	cf, err = lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, upd)
	if err != nil || cf.Port != 8080 || cf.Algorithm != "leastconn" || cf.CheckPath != "/healthz" {
		t.Fatalf("update from GetUpdateOptions: %+v, %v", cf, err)
	}

	n1, err := lc.CreateNodeBalancerNode(ctx, nb.ID, cf.ID, linodego.NodeBalancerNodeCreateOptions{
		Address: "127.0.2.1:8080", Label: "node-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if n1.Weight != 50 || n1.Mode != "accept" || n1.Status != "Unknown" || n1.ConfigID != cf.ID || n1.NodeBalancerID != nb.ID {
		t.Fatalf("node defaults %+v", n1)
	}
	n2, err := lc.CreateNodeBalancerNode(ctx, nb.ID, cf.ID, linodego.NodeBalancerNodeCreateOptions{
		Address: "10.0.0.2:8080", Label: "node-2", Weight: 200, Mode: "reject",
	})
	if err != nil {
		t.Fatal(err)
	}
	if n2.Status != "DOWN" {
		t.Fatalf("a rejecting node shows %q, want DOWN", n2.Status)
	}
	n1, err = lc.UpdateNodeBalancerNode(ctx, nb.ID, cf.ID, n1.ID, linodego.NodeBalancerNodeUpdateOptions{Weight: 7})
	if err != nil || n1.Weight != 7 || n1.Label != "node-1" || n1.Address != "127.0.2.1:8080" {
		t.Fatalf("node partial update: %+v, %v", n1, err)
	}
	nodes, err := lc.ListNodeBalancerNodes(ctx, nb.ID, cf.ID, nil)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes = %v, %v", nodes, err)
	}
	got, err := lc.GetNodeBalancerConfig(ctx, nb.ID, cf.ID)
	if err != nil || got.NodesStatus.Down != 1 || got.NodesStatus.Up != 0 {
		t.Fatalf("nodes_status after a reject node: %+v, %v", got.NodesStatus, err)
	}
	// Public addresses are refused with a reason naming the allowed ranges.
	_, err = lc.CreateNodeBalancerNode(ctx, nb.ID, cf.ID, linodego.NodeBalancerNodeCreateOptions{Address: "8.8.8.8:80", Label: "public"})
	if status(err) != 400 || !strings.Contains(err.Error(), "[address]") || !strings.Contains(err.Error(), "outside the allowed backend ranges") {
		t.Fatalf("public address: %v", err)
	}
	if err := lc.DeleteNodeBalancerNode(ctx, nb.ID, cf.ID, n2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.GetNodeBalancerNode(ctx, nb.ID, cf.ID, n2.ID); !linodego.IsNotFound(err) {
		t.Fatalf("deleted node: %v", err)
	}
	// A node is only found under its own NodeBalancer and config.
	if _, err := lc.GetNodeBalancerNode(ctx, nb.ID+1000, cf.ID, n1.ID); !linodego.IsNotFound(err) {
		t.Fatalf("node under another NodeBalancer: %v", err)
	}
	cfgs, err := lc.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	if err != nil || len(cfgs) != 1 {
		t.Fatalf("configs = %v, %v", cfgs, err)
	}
	if err := lc.DeleteNodeBalancerConfig(ctx, nb.ID, cf.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.ListNodeBalancerNodes(ctx, nb.ID, cf.ID, nil); !linodego.IsNotFound(err) {
		t.Fatalf("nodes of a deleted config: %v", err)
	}
}

func TestLinodegoCreateWithConfigsAndNodes(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	_, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local",
		Label: ptr("full"),
		Configs: []*linodego.NodeBalancerConfigCreateOptions{
			{Port: 80, Nodes: []linodego.NodeBalancerNodeCreateOptions{
				{Address: "127.0.2.1:80", Label: "a"}, {Address: "127.0.2.2:80", Label: "bb-1"},
			}},
			{Port: 443, Protocol: "tcp", Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: "192.168.1.5:443", Label: "tls-1"}}},
		},
	})
	if status(err) != 400 || !strings.Contains(err.Error(), "[configs[0].nodes[0].label]") {
		t.Fatalf("a 1-character node label must be refused by its full path, got %v", err)
	}
	before := e.snapshot()
	_, err = lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local",
		Label: ptr("full"),
		Configs: []*linodego.NodeBalancerConfigCreateOptions{
			{Port: 80, Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: "127.0.2.1:80", Label: "aaa"}}},
			{Port: 80, Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: "127.0.2.2:80", Label: "bbb"}}},
		},
	})
	if status(err) != 400 || !strings.Contains(err.Error(), "configs[1].port") {
		t.Fatalf("duplicate port: %v", err)
	}
	if e.snapshot() != before {
		t.Fatal("a refused create stored something")
	}

	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local",
		Label: ptr("full"),
		Configs: []*linodego.NodeBalancerConfigCreateOptions{
			{Port: 80, Nodes: []linodego.NodeBalancerNodeCreateOptions{
				{Address: "127.0.2.1:80", Label: "aaa"}, {Address: "127.0.2.2:80", Label: "bbb", Weight: 10},
			}},
			{Port: 443, Protocol: "tcp", Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: "192.168.1.5:443", Label: "tls-1"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := lc.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	if err != nil || len(cfgs) != 2 || cfgs[0].Port != 80 || cfgs[1].Port != 443 || cfgs[1].Protocol != "tcp" {
		t.Fatalf("configs %+v, %v", cfgs, err)
	}
	nodes, err := lc.ListNodeBalancerNodes(ctx, nb.ID, cfgs[0].ID, nil)
	if err != nil || len(nodes) != 2 || nodes[1].Weight != 10 || nodes[0].Weight != 50 {
		t.Fatalf("nodes %+v, %v", nodes, err)
	}
}

func TestLinodegoRebuild(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("rebuild"),
		Configs: []*linodego.NodeBalancerConfigCreateOptions{
			{Port: 80, Nodes: []linodego.NodeBalancerNodeCreateOptions{
				{Address: "127.0.2.1:80", Label: "keep"}, {Address: "127.0.2.2:80", Label: "drop"},
			}},
			{Port: 81, Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: "127.0.2.9:80", Label: "other"}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, _ := lc.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	cf, other := cfgs[0], cfgs[1]
	nodes, _ := lc.ListNodeBalancerNodes(ctx, nb.ID, cf.ID, nil)
	otherNodes, _ := lc.ListNodeBalancerNodes(ctx, nb.ID, other.ID, nil)
	keep, drop := nodes[0], nodes[1]

	// A node of another config is refused, and nothing changes.
	before := e.snapshot()
	opts := cf.GetRebuildOptions()
	opts.Algorithm = "source"
	opts.Nodes = []linodego.NodeBalancerConfigRebuildNodeOptions{
		{ID: otherNodes[0].ID, NodeBalancerNodeCreateOptions: linodego.NodeBalancerNodeCreateOptions{Address: "127.0.2.9:80", Label: "other"}},
	}
	if _, err := lc.RebuildNodeBalancerConfig(ctx, nb.ID, cf.ID, opts); status(err) != 400 || !strings.Contains(err.Error(), "[nodes[0].id]") {
		t.Fatalf("foreign node id: %v", err)
	}
	if e.snapshot() != before {
		t.Fatal("a refused rebuild changed the store")
	}

	opts.Nodes = []linodego.NodeBalancerConfigRebuildNodeOptions{
		{ID: keep.ID, NodeBalancerNodeCreateOptions: linodego.NodeBalancerNodeCreateOptions{Address: "127.0.2.1:80", Label: "kept", Weight: 99}},
		{NodeBalancerNodeCreateOptions: linodego.NodeBalancerNodeCreateOptions{Address: "127.0.2.3:80", Label: "new"}},
	}
	got, err := lc.RebuildNodeBalancerConfig(ctx, nb.ID, cf.ID, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cf.ID || got.Algorithm != "source" || got.Port != 80 {
		t.Fatalf("rebuilt config %+v", got)
	}
	after, err := lc.ListNodeBalancerNodes(ctx, nb.ID, cf.ID, nil)
	if err != nil || len(after) != 2 {
		t.Fatalf("nodes after rebuild: %+v, %v", after, err)
	}
	if after[0].ID != keep.ID || after[0].Label != "kept" || after[0].Weight != 99 {
		t.Fatalf("listed node not updated in place: %+v", after[0])
	}
	if after[1].ID == drop.ID || after[1].Label != "new" || after[1].Weight != 50 {
		t.Fatalf("new node: %+v", after[1])
	}
	if _, err := lc.GetNodeBalancerNode(ctx, nb.ID, cf.ID, drop.ID); !linodego.IsNotFound(err) {
		t.Fatalf("unlisted node survived: %v", err)
	}
	if n, _ := lc.ListNodeBalancerNodes(ctx, nb.ID, other.ID, nil); len(n) != 1 {
		t.Fatalf("the other config's nodes changed: %+v", n)
	}
}

func TestLinodegoPaginationAndFilter(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	const n = 57
	for i := range n {
		tags := []string{"even"}
		if i%2 == 1 {
			tags = []string{"odd"}
		}
		if _, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr(fmt.Sprintf("lb-%02d", i)), Tags: tags}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := lc.ListNodeBalancers(ctx, &linodego.ListOptions{PageSize: 25})
	if err != nil || len(all) != n {
		t.Fatalf("linodego collected %d of %d over pages of 25: %v", len(all), n, err)
	}
	for i, nb := range all {
		if *nb.Label != fmt.Sprintf("lb-%02d", i) {
			t.Fatalf("item %d is %s: pages overlap or skip", i, *nb.Label)
		}
	}
	opts := &linodego.ListOptions{PageOptions: &linodego.PageOptions{Page: 3}, PageSize: 25}
	last, err := lc.ListNodeBalancers(ctx, opts)
	if err != nil || len(last) != 7 || opts.Pages != 3 || opts.Results != n {
		t.Fatalf("page 3: %d items, pages %d, results %d, %v", len(last), opts.Pages, opts.Results, err)
	}

	f := linodego.Filter{OrderBy: "label", Order: linodego.Descending}
	f.AddField(linodego.Eq, "tags", "odd")
	f.AddField(linodego.Contains, "label", "LB-1")
	fj, _ := f.MarshalJSON()
	got, err := lc.ListNodeBalancers(ctx, &linodego.ListOptions{Filter: string(fj)})
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, nb := range got {
		labels = append(labels, *nb.Label)
	}
	if want := []string{"lb-19", "lb-17", "lb-15", "lb-13", "lb-11"}; !slices.Equal(labels, want) {
		t.Fatalf("filtered %v, want %v", labels, want)
	}
	or := linodego.Or("", "", &linodego.Comp{Column: "label", Operator: linodego.Eq, Value: "lb-03"},
		&linodego.Comp{Column: "label", Operator: linodego.Eq, Value: "lb-40"})
	oj, _ := or.MarshalJSON()
	got, err = lc.ListNodeBalancers(ctx, &linodego.ListOptions{Filter: string(oj)})
	if err != nil || len(got) != 2 {
		t.Fatalf("+or: %d, %v", len(got), err)
	}
	_, err = lc.ListNodeBalancers(ctx, &linodego.ListOptions{Filter: `{"hostname":"x"}`})
	if status(err) != 400 || !strings.Contains(err.Error(), "hostname") {
		t.Fatalf("unknown filter field: %v", err)
	}
}

func TestLinodegoTLSConfig(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, _ := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("tls")})
	cert := testcert.New(t, "www.example.test")
	certPEM, keyPEM := cert.CertPEM, cert.KeyPEM
	cf, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{
		Port: 443, Protocol: "https", SSLCert: certPEM, SSLKey: keyPEM,
	})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(certPEM))
	sum := sha1.Sum(blk.Bytes)
	var fp []string
	for _, b := range sum {
		fp = append(fp, fmt.Sprintf("%02X", b))
	}
	if cf.SSLCert != "<REDACTED>" || cf.SSLKey != "<REDACTED>" || cf.SSLCommonName != "www.example.test" || cf.SSLFingerprint != strings.Join(fp, ":") {
		t.Fatalf("tls fields: cert %q key %q cn %q fp %q", cf.SSLCert, cf.SSLKey, cf.SSLCommonName, cf.SSLFingerprint)
	}
	// Echoing <REDACTED> back keeps the stored certificate.
	upd := cf.GetUpdateOptions()
	upd.CipherSuite = "legacy"
	cf2, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, upd)
	if err != nil || cf2.SSLFingerprint != cf.SSLFingerprint || cf2.CipherSuite != "legacy" {
		t.Fatalf("update with <REDACTED>: %+v, %v", cf2, err)
	}
	stored, _ := e.db.Config(nb.ID, cf.ID)
	if stored.SSLCert != certPEM || stored.SSLKey != keyPEM {
		t.Fatal("<REDACTED> replaced the stored certificate")
	}
	// Switching to http drops the certificate linodego cannot null out.
	cf3, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, linodego.NodeBalancerConfigUpdateOptions{Port: cf.Port, Protocol: "http"})
	if err != nil || cf3.SSLCert != "" || cf3.SSLCommonName != "" {
		t.Fatalf("https→http: %+v, %v", cf3, err)
	}
	// A key that does not match the certificate is refused.
	otherKey := testcert.New(t, "other.test").KeyPEM
	_, err = lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{
		Port: 8443, Protocol: "https", SSLCert: certPEM, SSLKey: otherKey,
	})
	if status(err) != 400 || !strings.Contains(err.Error(), "[ssl_key]") {
		t.Fatalf("mismatched key: %v", err)
	}
}

func TestLinodegoAuth(t *testing.T) {
	e := newEnv(t)
	srv := e.serve()
	admin := client(srv, e.token)
	ctx := context.Background()
	nb, err := admin.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("auth")})
	if err != nil {
		t.Fatal(err)
	}
	ro, err := admin.CreateToken(ctx, linodego.TokenCreateOptions{Label: "reader", Scopes: "nodebalancers:read_only"})
	if err != nil {
		t.Fatal(err)
	}
	soon := e.clock.Now().Add(time.Hour)
	exp, err := admin.CreateToken(ctx, linodego.TokenCreateOptions{Label: "brief", Scopes: "*", Expiry: &soon})
	if err != nil || exp.Expiry == nil || !exp.Expiry.Equal(soon.Truncate(time.Second)) {
		t.Fatalf("token with expiry: %+v, %v", exp, err)
	}
	other, err := admin.CreateToken(ctx, linodego.TokenCreateOptions{Scopes: "linodes:read_write"})
	if err != nil {
		t.Fatal(err)
	}

	for name, tok := range map[string]string{"none": "", "unknown": strings.Repeat("a", 64), "prefix only": ro.Token[:16]} {
		if _, err := client(srv, tok).ListNodeBalancers(ctx, nil); status(err) != 401 || !strings.Contains(err.Error(), "Invalid Token") {
			t.Errorf("%s token: %v", name, err)
		}
	}
	reader := client(srv, ro.Token)
	if _, err := reader.GetNodeBalancer(ctx, nb.ID); err != nil {
		t.Fatalf("read_only read: %v", err)
	}
	if _, err := reader.UpdateNodeBalancer(ctx, nb.ID, linodego.NodeBalancerUpdateOptions{Label: ptr("nope")}); status(err) != 403 ||
		!strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("read_only write: %v", err)
	}
	if _, err := reader.ListTokens(ctx, nil); status(err) != 403 {
		t.Fatalf("read_only token listing tokens: %v", err)
	}
	if _, err := client(srv, other.Token).ListNodeBalancers(ctx, nil); status(err) != 403 {
		t.Fatalf("token without nodebalancers scope: %v", err)
	}
	if _, err := client(srv, exp.Token).ListNodeBalancers(ctx, nil); err != nil {
		t.Fatalf("token before expiry: %v", err)
	}
	e.clock.Add(time.Hour)
	if _, err := client(srv, exp.Token).ListNodeBalancers(ctx, nil); status(err) != 401 {
		t.Fatalf("expired token: %v", err)
	}
	// Plan types are public, as on Linode.
	types, err := client(srv, "").ListNodeBalancerTypes(ctx, nil)
	if err != nil || len(types) != 1 || types[0].ID != "nodebalancer" || types[0].Label != "NodeBalancer" || types[0].RegionPrices == nil {
		t.Fatalf("types: %+v, %v", types, err)
	}
}

func TestLinodegoTokens(t *testing.T) {
	e := newEnv(t)
	srv := e.serve()
	admin := client(srv, e.token)
	ctx := context.Background()

	tok, err := admin.CreateToken(ctx, linodego.TokenCreateOptions{Label: "ci", Scopes: "nodebalancers:read_write nodebalancers:read_only"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Token) != 64 || tok.Scopes != "nodebalancers:read_write" || tok.Label != "ci" || tok.Expiry != nil || tok.Created == nil {
		t.Fatalf("created %+v", tok)
	}
	list, err := admin.ListTokens(ctx, nil)
	if err != nil || len(list) != 2 {
		t.Fatalf("tokens %+v, %v", list, err)
	}
	got, err := admin.GetToken(ctx, tok.ID)
	if err != nil || got.Token != tok.Token[:16] {
		t.Fatalf("get shows %q, want the 16-character prefix: %v", got.Token, err)
	}
	got, err = admin.UpdateToken(ctx, tok.ID, linodego.TokenUpdateOptions{Label: "ci-2"})
	if err != nil || got.Label != "ci-2" || got.Scopes != "nodebalancers:read_write" {
		t.Fatalf("update %+v, %v", got, err)
	}

	ci := client(srv, tok.Token)
	if _, err := ci.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"}); err != nil {
		t.Fatalf("new token: %v", err)
	}
	// A token cannot create a broader token, nor revoke a broader one.
	if _, err := ci.CreateToken(ctx, linodego.TokenCreateOptions{Scopes: "*"}); status(err) != 403 {
		t.Fatalf("escalation: %v", err)
	}
	if err := ci.DeleteToken(ctx, list[0].ID); status(err) != 403 {
		t.Fatalf("revoking the bootstrap token with a narrower one: %v", err)
	}
	child, err := ci.CreateToken(ctx, linodego.TokenCreateOptions{Label: "child"})
	if err != nil || child.Scopes != "nodebalancers:read_write" {
		t.Fatalf("a token without scopes inherits its creator's: %+v, %v", child, err)
	}
	if _, err := admin.CreateToken(ctx, linodego.TokenCreateOptions{Scopes: "nodebalancers:admin"}); status(err) != 400 {
		t.Fatalf("unknown scope level: %v", err)
	}
	past := time.Now().Add(-time.Hour)
	if _, err := admin.CreateToken(ctx, linodego.TokenCreateOptions{Expiry: &past}); status(err) != 400 || !strings.Contains(err.Error(), "[expiry]") {
		t.Fatalf("past expiry: %v", err)
	}

	if err := admin.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ci.ListNodeBalancers(ctx, nil); status(err) != 401 {
		t.Fatalf("revoked token still works: %v", err)
	}
	if _, err := admin.GetToken(ctx, tok.ID); !linodego.IsNotFound(err) {
		t.Fatalf("deleted token: %v", err)
	}
}

// statsSource is a fixed StatsSource.
type statsSource struct{}

func (statsSource) NodeBalancerStats(id int, _ url.Values) (any, error) {
	return linodego.NodeBalancerStats{Title: fmt.Sprintf("nb %d", id), Data: linodego.NodeBalancerStatsData{
		Connections: [][]float64{{1000, 3}}, Traffic: linodego.StatsTraffic{In: [][]float64{{1000, 10}}, Out: [][]float64{}},
	}}, nil
}

type transferSource struct{}

func (transferSource) NodeBalancerTransfer(id int) (in, out, total float64) { return 1.5, 2.25, 3.75 }

// statusSource is a settable NodeStatusSource, safe to change while serving.
type statusSource struct {
	mu sync.Mutex
	m  map[int]model.NodeStatus
}

func newStatusSource() *statusSource { return &statusSource{m: map[int]model.NodeStatus{}} }

func (s *statusSource) set(nodeID int, st model.NodeStatus) {
	s.mu.Lock()
	s.m[nodeID] = st
	s.mu.Unlock()
}

func (s *statusSource) NodeStatus(configID, nodeID int) model.NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[nodeID]
}

func TestLinodegoStatsTransferStatusAndFirewalls(t *testing.T) {
	plain := newEnv(t)
	lc := client(plain.serve(), plain.token)
	ctx := context.Background()
	nb, _ := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if _, err := lc.GetNodeBalancerStats(ctx, nb.ID); !linodego.IsNotFound(err) {
		t.Fatalf("stats without a source: %v", err)
	}
	fws, err := lc.ListNodeBalancerFirewalls(ctx, nb.ID, nil)
	if err != nil || len(fws) != 0 {
		t.Fatalf("firewalls %v, %v", fws, err)
	}
	if _, err := lc.ListNodeBalancerFirewalls(ctx, nb.ID+1, nil); !linodego.IsNotFound(err) {
		t.Fatalf("firewalls of a missing NodeBalancer: %v", err)
	}

	st := newStatusSource()
	e := newEnv(t, func(o *Options) { o.Stats, o.Transfer, o.Status = statsSource{}, transferSource{}, st })
	lc = client(e.serve(), e.token)
	nb, err = lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Configs: []*linodego.NodeBalancerConfigCreateOptions{{
		Port: 80, Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: "127.0.2.1:80", Label: "up-1"}, {Address: "127.0.2.2:80", Label: "down-1"}, {Address: "127.0.2.3:80", Label: "new-1"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if *nb.Transfer.In != 1.5 || *nb.Transfer.Out != 2.25 || *nb.Transfer.Total != 3.75 {
		t.Fatalf("transfer %+v", nb.Transfer)
	}
	stats, err := lc.GetNodeBalancerStats(ctx, nb.ID)
	if err != nil || stats.Title != fmt.Sprintf("nb %d", nb.ID) || stats.Data.Connections[0][1] != 3 {
		t.Fatalf("stats %+v, %v", stats, err)
	}
	cfgs, _ := lc.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	nodes, _ := lc.ListNodeBalancerNodes(ctx, nb.ID, cfgs[0].ID, nil)
	st.set(nodes[0].ID, model.StatusUp)
	st.set(nodes[1].ID, model.StatusDown)
	cf, _ := lc.GetNodeBalancerConfig(ctx, nb.ID, cfgs[0].ID)
	if cf.NodesStatus.Up != 1 || cf.NodesStatus.Down != 1 {
		t.Fatalf("nodes_status %+v", cf.NodesStatus)
	}
	f := `{"status":"UP"}`
	up, err := lc.ListNodeBalancerNodes(ctx, nb.ID, cf.ID, &linodego.ListOptions{Filter: f})
	if err != nil || len(up) != 1 || up[0].Label != "up-1" || up[0].Status != "UP" {
		t.Fatalf("nodes filtered on status: %+v, %v", up, err)
	}
}

func TestBodyTooLargeOverHTTP(t *testing.T) {
	e := newEnv(t)
	srv := e.serve()
	big := `{"label":"` + strings.Repeat("x", 3<<19) + `"}` // 1.5 MiB
	for _, chunked := range []bool{false, true} {
		var body = bytes.NewReader([]byte(big))
		req, _ := http.NewRequest("POST", srv.URL+"/v4/nodebalancers", body)
		if chunked {
			req.ContentLength = -1 // no Content-Length: the limit must hold while reading
			req.Body = struct {
				*bytes.Reader
				noClose
			}{bytes.NewReader([]byte(big)), noClose{}}
		}
		req.Header.Set("Authorization", "Bearer "+e.token)
		req.Header.Set("Content-Type", "application/json")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: status %d, want 413", chunked, res.StatusCode)
		}
	}
	if nbs, _ := e.db.ListNodeBalancers(); len(nbs) != 0 {
		t.Fatal("an oversized body stored something")
	}
}

type noClose struct{}

func (noClose) Close() error { return nil }

func TestPersistenceAcrossRestart(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.api)
	lc := client(srv, e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("durable"), Tags: []string{"keep"},
		Configs: []*linodego.NodeBalancerConfigCreateOptions{{Port: 8080, Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: "127.0.2.1:80", Label: "n-1"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := lc.CreateToken(ctx, linodego.TokenCreateOptions{Label: "later", Scopes: "nodebalancers:read_only"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}

	db := teststore.Open(t, e.dir, apiPool)
	defer db.Close()
	if again, err := Bootstrap(db, ""); err != nil || again != "" {
		t.Fatalf("bootstrap on a store with tokens = %q, %v", again, err)
	}
	srv2 := httptest.NewServer(New(Options{DB: db, Policy: testPolicy}))
	defer srv2.Close()
	lc2 := client(srv2, tok.Token)
	got, err := lc2.GetNodeBalancer(ctx, nb.ID)
	if err != nil || *got.Label != "durable" || *got.IPv4 != *nb.IPv4 || !got.Created.Equal(*nb.Created) {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	cfgs, err := lc2.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	if err != nil || len(cfgs) != 1 || cfgs[0].Port != 8080 {
		t.Fatalf("configs after reopen: %+v, %v", cfgs, err)
	}
	nodes, err := lc2.ListNodeBalancerNodes(ctx, nb.ID, cfgs[0].ID, nil)
	if err != nil || len(nodes) != 1 || nodes[0].Label != "n-1" {
		t.Fatalf("nodes after reopen: %+v, %v", nodes, err)
	}
}

// TestLinodegoUDPFieldsRoundTrip: udp_check_port is accepted, stored and echoed on
// every protocol (default 80), udp_session_timeout is shown read-only, and
// client_udp_sess_throttle round-trips on NodeBalancers, as Terraform and linode_api4
// send and read them.
func TestLinodegoUDPFieldsRoundTrip(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", ClientUDPSessThrottle: ptr(5)})
	if err != nil || nb.ClientUDPSessThrottle != 5 {
		t.Fatalf("create: %+v, %v", nb, err)
	}
	nb, err = lc.UpdateNodeBalancer(ctx, nb.ID, linodego.NodeBalancerUpdateOptions{ClientUDPSessThrottle: ptr(20)})
	if err != nil || nb.ClientUDPSessThrottle != 20 {
		t.Fatalf("update: %+v, %v", nb, err)
	}
	if _, err := lc.UpdateNodeBalancer(ctx, nb.ID, linodego.NodeBalancerUpdateOptions{ClientUDPSessThrottle: ptr(21)}); status(err) != 400 ||
		!strings.Contains(err.Error(), "client_udp_sess_throttle") {
		t.Fatalf("throttle 21: %v", err)
	}
	if nb, err = lc.GetNodeBalancer(ctx, nb.ID); err != nil || nb.ClientUDPSessThrottle != 20 {
		t.Fatalf("get: %+v, %v", nb, err)
	}

	for i, proto := range []linodego.ConfigProtocol{"http", "tcp"} {
		cf, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{
			Port: 8000 + i, Protocol: proto, UDPCheckPort: ptr(1234)})
		if err != nil || cf.UDPCheckPort != 1234 || cf.UDPSessionTimeout != model.UDPSessionTimeout {
			t.Fatalf("%s create: %+v, %v", proto, cf, err)
		}
		cf, err = lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, linodego.NodeBalancerConfigUpdateOptions{
			Port: cf.Port, UDPCheckPort: ptr(4321)})
		if err != nil || cf.UDPCheckPort != 4321 {
			t.Fatalf("%s update: %+v, %v", proto, cf, err)
		}
		// An update that leaves it out keeps it.
		cf, err = lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, linodego.NodeBalancerConfigUpdateOptions{Port: cf.Port, CheckPath: "/x"})
		if err != nil || cf.UDPCheckPort != 4321 {
			t.Fatalf("%s partial update: %+v, %v", proto, cf, err)
		}
		cf, err = lc.RebuildNodeBalancerConfig(ctx, nb.ID, cf.ID, linodego.NodeBalancerConfigRebuildOptions{
			Port: cf.Port, UDPCheckPort: ptr(53), Nodes: []linodego.NodeBalancerConfigRebuildNodeOptions{}})
		if err != nil || cf.UDPCheckPort != 53 {
			t.Fatalf("%s rebuild: %+v, %v", proto, cf, err)
		}
		if got, err := lc.GetNodeBalancerConfig(ctx, nb.ID, cf.ID); err != nil || got.UDPCheckPort != 53 {
			t.Fatalf("%s get: %+v, %v", proto, got, err)
		}
	}
	// Left out on create, it is 80.
	cf, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{Port: 8100})
	if err != nil || cf.UDPCheckPort != 80 {
		t.Fatalf("default: %+v, %v", cf, err)
	}
	if _, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, cf.ID, linodego.NodeBalancerConfigUpdateOptions{Port: cf.Port, UDPCheckPort: ptr(70000)}); status(err) != 400 ||
		!strings.Contains(err.Error(), "udp_check_port") {
		t.Fatalf("udp_check_port 70000: %v", err)
	}
}
