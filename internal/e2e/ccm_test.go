package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// This file replays, request for request, what Linode's Kubernetes cloud controller
// manager (linode/linode-cloud-controller-manager, cloud/linode/loadbalancers.go:
// EnsureLoadBalancer → createNodeBalancer / updateNodeBalancer, and
// EnsureLoadBalancerDeleted) sends for one Service's whole life, in the JSON shapes
// its linodego/v2 marshals (omitzero fields left out, check_passive and
// client_conn_throttle always sent through pointers, no stickiness for tcp). The
// Service is data (ccmService, ccmPort); each lifecycle step edits it and replays the
// CCM's reconcile, so a new case — a UDP port, the firewall annotations — is one
// more step. test/ccm runs the CCM's own code against a server to back this replay.

// ccmPort is one Service port as the CCM reads it from the port and its annotations.
type ccmPort struct {
	port, nodePort                          int
	protocol, proxyProtocol, algorithm      string
	stickiness, check, checkPath, checkBody string
	cert, key                               string // from the port's TLS Secret (https)
	udpCheckPort                            int    // udp ports only (the CCM's default is 80)
}

// ccmService is what the CCM turns into requests: annotations, ports and nodes.
type ccmService struct {
	throttle         int      // linode-loadbalancer-throttle
	tags             []string // the cluster name, then linode-loadbalancer-tags
	reservedIPv4     string   // linode-loadbalancer-reserved-ipv4
	retainReservedIP bool     // linode-loadbalancer-retain-reserved-ipv4 (default true)
	nodeBalancerID   int      // linode-loadbalancer-nodebalancer-id: take over this one
	name             string   // the Service's name (in the ACL rules' labels)
	fwACL            []string // linode-loadbalancer-firewall-acl: {"allowList": {"ipv4": fwACL}}
	fwID             int      // linode-loadbalancer-firewall-id (wins over fwACL)
	ports            []ccmPort
	nodes            []netip.Addr // the nodes' InternalIPs
}

// ccmReplay plays the CCM's side against e's server over raw HTTP.
type ccmReplay struct {
	e  *env
	ip string // the Service's status: the NodeBalancer's ipv4, "" before create
}

// call sends one request as the CCM's linodego does and decodes a 200 into out.
func (r *ccmReplay) call(method, path string, body any, filter string, out any) {
	r.e.t.Helper()
	var rd io.Reader
	var sent []byte
	if body != nil {
		var err error
		if sent, err = json.Marshal(body); err != nil {
			r.e.t.Fatal(err)
		}
		rd = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, r.e.api+"/v4"+path, rd)
	if err != nil {
		r.e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bootstrapToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "linode-cloud-controller-manager (replay)")
	if filter != "" {
		req.Header.Set("X-Filter", filter)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		r.e.t.Fatalf("CCM request %s %s %s: %d %s", method, path, sent, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// config is buildNodeBalancerConfig's result as GetCreateOptions/GetRebuildOptions
// marshal it.
func (p ccmPort) config() map[string]any {
	c := map[string]any{
		"port": p.port, "protocol": p.protocol, "proxy_protocol": p.proxyProtocol,
		"algorithm": p.algorithm, "check": p.check,
		"check_interval": 5, "check_timeout": 3, "check_attempts": 2, "check_passive": p.protocol != "udp",
	}
	if p.protocol == "udp" {
		c["udp_check_port"] = p.udpCheckPort
	}
	if p.protocol != "tcp" { // getPortConfig: "Stickiness is not supported for TCP protocol"
		c["stickiness"] = p.stickiness
	}
	if p.check == "http" || p.check == "http_body" {
		c["check_path"] = p.checkPath
	}
	if p.check == "http_body" {
		c["check_body"] = p.checkBody
	}
	if p.protocol == "https" {
		c["ssl_cert"], c["ssl_key"] = p.cert, p.key
	}
	return c
}

// nodes is buildNodeBalancerConfigNodes: every node on the port's NodePort, weight
// 100, labelled with the node's name, with the id of the node already at that address.
func (s ccmService) nodeOpts(p ccmPort, ids map[string]int) []map[string]any {
	out := []map[string]any{}
	for _, ip := range s.nodes {
		addr := netip.AddrPortFrom(ip, uint16(p.nodePort)).String()
		n := map[string]any{"address": addr, "label": ccmNodeName(ip), "weight": 100}
		if p.protocol != "udp" { // "Mode is not set for UDP protocol"
			n["mode"] = "accept"
		}
		if id, ok := ids[addr]; ok {
			n["id"] = id
		}
		out = append(out, n)
	}
	return out
}

// ccmNodeName is the name of the cluster node at ip: node-<last octet>.
func ccmNodeName(ip netip.Addr) string { return "node-" + strconv.Itoa(int(ip.As4()[3])) }

type ccmNB struct {
	ID                 int      `json:"id"`
	Label              string   `json:"label"`
	IPv4               string   `json:"ipv4"`
	ClientConnThrottle int      `json:"client_conn_throttle"`
	Tags               []string `json:"tags"`
}

type ccmPage[T any] struct {
	Data []T `json:"data"`
}

// nodeBalancer is getNodeBalancerByIP: the list filtered by the status's ipv4.
func (r *ccmReplay) nodeBalancer() (ccmNB, bool) {
	var pg ccmPage[ccmNB]
	r.call("GET", "/nodebalancers", nil, fmt.Sprintf(`{"ipv4": "%v"}`, r.ip), &pg)
	if len(pg.Data) == 0 {
		return ccmNB{}, false
	}
	return pg.Data[0], true
}

// ensure is EnsureLoadBalancer: create when the status names no NodeBalancer,
// otherwise updateNodeBalancer.
func (r *ccmReplay) ensure(s ccmService) ccmNB {
	r.e.t.Helper()
	var nb ccmNB
	found := false
	switch {
	case s.nodeBalancerID != 0: // getNodeBalancerByID
		r.call("GET", "/nodebalancers/"+strconv.Itoa(s.nodeBalancerID), nil, "", &nb)
		r.ip, found = nb.IPv4, true
	case r.ip != "": // getNodeBalancerByStatus
		nb, found = r.nodeBalancer()
	}
	if !found {
		configs := []map[string]any{}
		for _, p := range s.ports {
			c := p.config()
			c["nodes"] = s.nodeOpts(p, nil)
			configs = append(configs, c)
		}
		// GetLoadBalancerName: the prefix and the last 12 hex digits of the time.
		ns := strconv.FormatInt(time.Now().UnixNano(), 16)
		body := map[string]any{"label": "ccm-" + ns[len(ns)-12:], "region": "local", "client_conn_throttle": s.throttle,
			"configs": configs, "tags": s.tags, "type": "common"}
		if s.reservedIPv4 != "" {
			body["ipv4"] = s.reservedIPv4
		}
		switch { // createNodeBalancer: firewall-id wins, else a firewall made from the ACL
		case s.fwID != 0:
			body["firewall_id"] = s.fwID
		case s.fwACL != nil:
			var fw struct{ ID int }
			r.call("POST", "/networking/firewalls", map[string]any{"label": body["label"], "tags": s.tags, "rules": s.aclRules(body["label"].(string))}, "", &fw)
			body["firewall_id"] = fw.ID
		}
		r.call("POST", "/nodebalancers", body, "", &nb)
		r.ip = nb.IPv4
		return nb
	}
	if s.throttle != nb.ClientConnThrottle {
		r.call("PUT", "/nodebalancers/"+strconv.Itoa(nb.ID), map[string]any{"label": nb.Label, "client_conn_throttle": s.throttle, "tags": nb.Tags}, "", &nb)
	}
	if !slices.Equal(nb.Tags, s.tags) {
		r.call("PUT", "/nodebalancers/"+strconv.Itoa(nb.ID), map[string]any{"label": nb.Label, "client_conn_throttle": nb.ClientConnThrottle, "tags": s.tags}, "", &nb)
	}
	r.updateFirewall(s, nb)

	var cfgs ccmPage[map[string]any]
	r.call("GET", "/nodebalancers/"+strconv.Itoa(nb.ID)+"/configs", nil, "", &cfgs)
	for _, c := range cfgs.Data { // deleteUnusedConfigs
		if !slices.ContainsFunc(s.ports, func(p ccmPort) bool { return float64(p.port) == c["port"] }) {
			r.call("DELETE", fmt.Sprintf("/nodebalancers/%d/configs/%v", nb.ID, c["id"]), nil, "", nil)
		}
	}
	for _, p := range s.ports {
		var cur map[string]any
		for _, c := range cfgs.Data {
			if c["port"] == float64(p.port) {
				cur = c
			}
		}
		ids := map[string]int{}
		var rebuild map[string]any
		if cur != nil {
			var nodes ccmPage[struct {
				ID      int    `json:"id"`
				Address string `json:"address"`
			}]
			r.call("GET", fmt.Sprintf("/nodebalancers/%d/configs/%v/nodes", nb.ID, cur["id"]), nil, "", &nodes)
			for _, n := range nodes.Data {
				ids[n.Address] = n.ID
			}
			rebuild = p.config()
		} else {
			r.call("POST", fmt.Sprintf("/nodebalancers/%d/configs", nb.ID), p.config(), "", &cur)
			rebuild = rebuildFromResponse(cur)
			// "SSLCert and SSLKey return <REDACTED> from the API, so copy the value
			// that we sent in create for the rebuild".
			delete(rebuild, "ssl_cert")
			delete(rebuild, "ssl_key")
			if p.protocol == "https" {
				rebuild["ssl_cert"], rebuild["ssl_key"] = p.cert, p.key
			}
		}
		rebuild["nodes"] = s.nodeOpts(p, ids)
		r.call("POST", fmt.Sprintf("/nodebalancers/%d/configs/%v/rebuild", nb.ID, cur["id"]), rebuild, "", nil)
	}
	nb, _ = r.nodeBalancer()
	return nb
}

// aclRules is CreateFirewallOptsForSvc/processACL for an allow list: one accept rule
// (protocol TCP, the Service's ports), inbound policy DROP, outbound ACCEPT.
func (s ccmService) aclRules(label string) map[string]any {
	ports := []string{}
	for _, p := range s.ports {
		ports = append(ports, strconv.Itoa(p.port))
	}
	return map[string]any{
		"inbound": []map[string]any{{"action": "ACCEPT", "label": "ACCEPT-" + s.name,
			"description": "Created by linode-ccm: " + label + ", for " + s.name, "ports": strings.Join(ports, ","),
			"protocol": "TCP", "addresses": map[string]any{"ipv4": s.fwACL}}},
		"inbound_policy": "DROP", "outbound": nil, "outbound_policy": "ACCEPT",
	}
}

type ccmFirewall struct {
	ID    int    `json:"id"`
	Label string `json:"label"`
}

// nbDevice is getNodeBalancerDeviceID: the id of nb's device on firewall fw.
func (r *ccmReplay) nbDevice(fw, nb int) (id int, found bool, devices int) {
	var pg ccmPage[struct {
		ID     int `json:"id"`
		Entity struct {
			ID int `json:"id"`
		} `json:"entity"`
	}]
	r.call("GET", fmt.Sprintf("/networking/firewalls/%d/devices", fw), nil, "", &pg)
	for _, d := range pg.Data {
		if d.Entity.ID == nb {
			return d.ID, true, len(pg.Data)
		}
	}
	return 0, false, len(pg.Data)
}

// updateFirewall is UpdateNodeBalancerFirewall.
func (r *ccmReplay) updateFirewall(s ccmService, nb ccmNB) {
	r.e.t.Helper()
	var fws ccmPage[ccmFirewall]
	r.call("GET", fmt.Sprintf("/nodebalancers/%d/firewalls", nb.ID), nil, "", &fws)
	if len(fws.Data) > 1 {
		r.e.t.Fatalf("ErrTooManyNBFirewalls: %+v", fws.Data)
	}
	switch {
	case s.fwID != 0: // updateServiceFirewall: attach the new one, then detach the old
		if len(fws.Data) == 1 && fws.Data[0].ID == s.fwID {
			return
		}
		r.call("POST", fmt.Sprintf("/networking/firewalls/%d/devices", s.fwID), map[string]any{"id": nb.ID, "type": "nodebalancer"}, "", nil)
		if len(fws.Data) == 1 {
			dev, ok, _ := r.nbDevice(fws.Data[0].ID, nb.ID)
			if !ok {
				r.e.t.Fatal("error in fetching attached nodeBalancer device")
			}
			r.call("DELETE", fmt.Sprintf("/networking/firewalls/%d/devices/%d", fws.Data[0].ID, dev), nil, "", nil)
		}
	case s.fwACL != nil: // updateNodeBalancerFirewallWithACL
		if len(fws.Data) == 0 {
			var fw struct{ ID int }
			r.call("POST", "/networking/firewalls", map[string]any{"label": nb.Label, "tags": s.tags, "rules": s.aclRules(nb.Label)}, "", &fw)
			r.call("POST", fmt.Sprintf("/networking/firewalls/%d/devices", fw.ID), map[string]any{"id": nb.ID, "type": "nodebalancer"}, "", nil)
			return
		}
		// ruleChanged decides whether to send; sending the same rules again is harmless.
		r.call("PUT", fmt.Sprintf("/networking/firewalls/%d/rules", fws.Data[0].ID), s.aclRules(fws.Data[0].Label), "", nil)
	case len(fws.Data) == 1: // no annotation: detach, and delete the firewall if nothing else uses it
		fw := fws.Data[0].ID
		if dev, ok, _ := r.nbDevice(fw, nb.ID); ok {
			r.call("DELETE", fmt.Sprintf("/networking/firewalls/%d/devices/%d", fw, dev), nil, "", nil)
		}
		if _, _, n := r.nbDevice(fw, nb.ID); n == 0 {
			r.call("DELETE", fmt.Sprintf("/networking/firewalls/%d", fw), nil, "", nil)
		}
	}
}

// rebuildFromResponse is NodeBalancerConfig.GetRebuildOptions on a config the API
// returned: its fields, zero values left out (omitzero), check_passive always.
func rebuildFromResponse(c map[string]any) map[string]any {
	out := map[string]any{"port": c["port"], "check_passive": c["check_passive"]}
	for _, k := range []string{"protocol", "proxy_protocol", "algorithm", "stickiness", "check", "check_interval",
		"check_attempts", "check_path", "check_body", "check_timeout", "udp_check_port", "cipher_suite", "ssl_cert", "ssl_key"} {
		if v, ok := c[k]; ok && v != nil && v != "" && v != float64(0) {
			out[k] = v
		}
	}
	return out
}

// delete is EnsureLoadBalancerDeleted: release the reserved address unless told to
// retain it, then delete the NodeBalancer.
func (r *ccmReplay) delete(s ccmService) {
	r.e.t.Helper()
	nb, found := r.nodeBalancer()
	if !found {
		r.e.t.Fatal("EnsureLoadBalancerDeleted: no NodeBalancer at the Service's address")
	}
	if s.fwACL != nil { // DeleteNodeBalancerFirewall: only a firewall the ACL made
		var fws ccmPage[ccmFirewall]
		r.call("GET", fmt.Sprintf("/nodebalancers/%d/firewalls", nb.ID), nil, "", &fws)
		if len(fws.Data) == 1 {
			if _, _, n := r.nbDevice(fws.Data[0].ID, nb.ID); n <= 1 {
				r.call("DELETE", fmt.Sprintf("/networking/firewalls/%d", fws.Data[0].ID), nil, "", nil)
			}
		}
	}
	if !s.retainReservedIP {
		r.call("DELETE", "/networking/reserved/ips/"+nb.IPv4, nil, "", nil)
	}
	r.call("DELETE", "/nodebalancers/"+strconv.Itoa(nb.ID), nil, "", nil)
}

// ccmBackend answers every request with its name, on a node's NodePort.
func (e *env) ccmBackend(name string, ap netip.AddrPort) {
	e.t.Helper()
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
}

// answers sends requests to url until every name in want has answered (with no
// names: until one request is answered).
func (e *env) answers(c *http.Client, url string, want ...string) {
	e.t.Helper()
	seen := map[string]bool{}
	var last error
	defer func() {
		if e.t.Failed() {
			e.t.Logf("last error from %s: %v", url, last)
		}
	}()
	waitFor(e.t, 5*time.Second, url+" to reach "+fmt.Sprint(want), func() bool {
		// Under the client_conn_throttle of 5 new connections per second.
		time.Sleep(210 * time.Millisecond)
		resp, err := c.Get(url)
		if err != nil {
			last = err
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(b)] = true
		for _, w := range want {
			if !seen[w] {
				return false
			}
		}
		return true
	})
}

func TestCCMServiceLifecycleReplay(t *testing.T) {
	e := newEnv(t)
	tc := testcert.New(t, tlsName)
	certPEM, keyPEM, roots := tc.CertPEM, tc.KeyPEM, tc.Pool
	n1, n2, n3 := e.backendIP(1), e.backendIP(2), e.backendIP(3)
	const httpNP, tlsNP, tcpNP = 30080, 30443, 30900
	for _, ip := range []netip.Addr{n1, n2, n3} {
		for _, np := range []uint16{httpNP, tlsNP, tcpNP} {
			e.ccmBackend(ccmNodeName(ip), netip.AddrPortFrom(ip, np))
		}
	}
	plain := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tlsClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: tlsName}}}

	// The operator reserves the Service's address first (linode-cli networking
	// reserved-ip-add), then annotates the Service with it.
	rip, err := e.lc.ReserveIPAddress(e.ctx, linodego.ReserveIPOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	web := ccmPort{port: 80, nodePort: httpNP, protocol: "http", proxyProtocol: "none", algorithm: "leastconn",
		stickiness: "http_cookie", check: "http", checkPath: "/healthz"}
	svc := ccmService{throttle: 5, tags: []string{"demo", "team-web"}, reservedIPv4: rip.Address,
		ports: []ccmPort{web}, nodes: []netip.Addr{n1, n2}}
	r := &ccmReplay{e: e}
	cfgOf := func(port int) linodego.NodeBalancerConfig {
		t.Helper()
		nb, _ := r.nodeBalancer()
		cfgs, err := e.lc.ListNodeBalancerConfigs(e.ctx, nb.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cfgs {
			if c.Port == port {
				return c
			}
		}
		t.Fatalf("no config for port %d", port)
		return linodego.NodeBalancerConfig{}
	}

	// nodeIDs is the node id at each address of the config on port.
	nodeIDs := func(port int) map[string]int {
		t.Helper()
		nb, _ := r.nodeBalancer()
		nodes, err := e.lc.ListNodeBalancerNodes(e.ctx, nb.ID, cfgOf(port).ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]int{}
		for _, n := range nodes {
			ids[n.Address] = n.ID
		}
		return ids
	}
	var idsBefore map[int]map[string]int
	var firstFingerprint string

	steps := []struct {
		name  string
		edit  func(*ccmService)
		check func(nb ccmNB)
	}{
		{"create: http, http_cookie, check http, throttle, leastconn, tags, reserved ipv4", nil, func(nb ccmNB) {
			if nb.IPv4 != rip.Address || nb.ClientConnThrottle != 5 || !slices.Equal(nb.Tags, []string{"demo", "team-web"}) {
				t.Fatalf("created %+v, want ipv4 %s", nb, rip.Address)
			}
			c := cfgOf(80)
			if c.Protocol != "http" || c.Stickiness != "http_cookie" || c.Check != "http" || c.CheckPath != "/healthz" || c.Algorithm != "leastconn" {
				t.Fatalf("config 80: %+v", c)
			}
			e.answers(plain, "http://"+nb.IPv4+":80/", "node-1", "node-2")
		}},
		{"add ports: 443 https with the TLS Secret, 9000 tcp", func(s *ccmService) {
			s.ports = append(s.ports,
				ccmPort{port: 443, nodePort: tlsNP, protocol: "https", proxyProtocol: "none", algorithm: "roundrobin",
					stickiness: "table", check: "connection", cert: certPEM, key: keyPEM},
				ccmPort{port: 9000, nodePort: tcpNP, protocol: "tcp", proxyProtocol: "none", algorithm: "roundrobin", check: "connection"})
		}, func(nb ccmNB) {
			c := cfgOf(443)
			if c.Protocol != "https" || c.SSLCommonName != tlsName || c.SSLCert != "<REDACTED>" {
				t.Fatalf("config 443: %+v", c)
			}
			firstFingerprint = c.SSLFingerprint
			if c := cfgOf(9000); c.Protocol != "tcp" || c.Stickiness != "none" {
				t.Fatalf("config 9000: %+v", c)
			}
			e.answers(tlsClient, "https://"+nb.IPv4+":443/") // table stickiness: one node answers this client
			e.answers(plain, "http://"+nb.IPv4+":9000/", "node-1", "node-2")
		}},
		{"protocol change: port 80 http+http_cookie → tcp+proxy_protocol v2 (rebuild without stickiness)", func(s *ccmService) {
			s.ports[0].protocol, s.ports[0].proxyProtocol = "tcp", "v2"
		}, func(ccmNB) {
			if c := cfgOf(80); c.Protocol != "tcp" || c.ProxyProtocol != "v2" || c.Stickiness != "none" {
				t.Fatalf("config 80 after the change: %+v", c)
			}
		}},
		{"annotations: port 80 back to http with table stickiness, throttle 0, roundrobin, check connection, one tag", func(s *ccmService) {
			s.ports[0] = ccmPort{port: 80, nodePort: httpNP, protocol: "http", proxyProtocol: "none", algorithm: "roundrobin",
				stickiness: "table", check: "connection"}
			s.throttle, s.tags = 0, []string{"demo"}
		}, func(nb ccmNB) {
			if nb.ClientConnThrottle != 0 || !slices.Equal(nb.Tags, []string{"demo"}) {
				t.Fatalf("NodeBalancer %+v", nb)
			}
			if c := cfgOf(80); c.Protocol != "http" || c.ProxyProtocol != "none" || c.Stickiness != "table" || c.Check != "connection" || c.Algorithm != "roundrobin" {
				t.Fatalf("config 80: %+v", c)
			}
			e.answers(plain, "http://"+nb.IPv4+":80/") // table stickiness again
		}},
		{"rotate the TLS Secret: the rebuild carries the new certificate", func(s *ccmService) {
			rc := testcert.New(t, tlsName)
			s.ports[1].cert, s.ports[1].key, roots = rc.CertPEM, rc.KeyPEM, rc.Pool
		}, func(nb ccmNB) {
			c := cfgOf(443)
			if c.SSLFingerprint == firstFingerprint || c.SSLFingerprint == "" {
				t.Fatalf("fingerprint after rotation %q (before %q)", c.SSLFingerprint, firstFingerprint)
			}
			rotated := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
				TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: tlsName}}}
			e.answers(rotated, "https://"+nb.IPv4+":443/")
		}},
		{"protocol change: port 443 https → tcp (the rebuild carries no certificate)", func(s *ccmService) {
			s.ports[1] = ccmPort{port: 443, nodePort: tlsNP, protocol: "tcp", proxyProtocol: "none", algorithm: "roundrobin", check: "connection"}
		}, func(nb ccmNB) {
			c := cfgOf(443)
			// table fits tcp, so the stored table stays: only values the new protocol
			// refuses fall back.
			if c.Protocol != "tcp" || c.SSLCert != "" || c.SSLKey != "" || c.SSLCommonName != "" || c.CipherSuite != "recommended" || c.Stickiness != "table" {
				t.Fatalf("config 443 after https → tcp: %+v", c)
			}
			e.answers(plain, "http://"+nb.IPv4+":443/") // the backends speak plain HTTP
		}},
		{"node swap: node-2 replaced by node-3 (node-1 keeps its id on every port)", func(s *ccmService) {
			idsBefore = map[int]map[string]int{}
			for _, p := range s.ports {
				idsBefore[p.port] = nodeIDs(p.port)
			}
			s.nodes = []netip.Addr{n1, n3}
		}, func(nb ccmNB) {
			for _, p := range svc.ports {
				got := nodeIDs(p.port)
				a1, a2, a3 := netip.AddrPortFrom(n1, uint16(p.nodePort)).String(),
					netip.AddrPortFrom(n2, uint16(p.nodePort)).String(), netip.AddrPortFrom(n3, uint16(p.nodePort)).String()
				if len(got) != 2 || got[a1] != idsBefore[p.port][a1] || got[a3] == 0 || got[a2] != 0 {
					t.Fatalf("port %d nodes after the swap %v, before %v", p.port, got, idsBefore[p.port])
				}
			}
			e.answers(plain, "http://"+nb.IPv4+":9000/", "node-1", "node-3")
		}},
		{"remove port 9000 and node-3 (node-1 keeps its id)", func(s *ccmService) {
			s.ports = s.ports[:2]
			s.nodes = s.nodes[:1]
		}, func(nb ccmNB) {
			cfgs, err := e.lc.ListNodeBalancerConfigs(e.ctx, nb.ID, nil)
			if err != nil || len(cfgs) != 2 {
				t.Fatalf("configs %+v, %v", cfgs, err)
			}
			c := cfgOf(80)
			nodes, err := e.lc.ListNodeBalancerNodes(e.ctx, nb.ID, c.ID, nil)
			if err != nil || len(nodes) != 1 || nodes[0].Address != netip.AddrPortFrom(n1, httpNP).String() || nodes[0].ID != 1 {
				t.Fatalf("nodes of port 80: %+v, %v (node-1 must keep id 1)", nodes, err)
			}
			e.answers(plain, "http://"+nb.IPv4+":80/", "node-1")
		}},
		// The udp port and the firewall annotations have their own Service:
		// TestCCMUDPPortAndFirewallAnnotations.
	}
	for _, st := range steps {
		if st.edit != nil {
			st.edit(&svc)
		}
		st.check(r.ensure(svc))
		t.Logf("%s: ok", st.name)
	}

	// Delete with retain-reserved-ipv4 false: the CCM releases the address while the
	// NodeBalancer still uses it, then deletes the NodeBalancer.
	svc.retainReservedIP = false
	r.delete(svc)
	if nbs, err := e.lc.ListNodeBalancers(e.ctx, nil); err != nil || len(nbs) != 0 {
		t.Fatalf("NodeBalancers left: %+v, %v", nbs, err)
	}
	if rips, err := e.lc.ListReservedIPAddresses(e.ctx, nil); err != nil || len(rips) != 0 {
		t.Fatalf("reserved addresses left: %+v, %v", rips, err)
	}
	waitFor(t, 5*time.Second, "the listener on the deleted NodeBalancer's address to close", func() bool {
		c, err := net.DialTimeout("tcp", rip.Address+":80", 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// The released address is an ordinary free one again.
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil || *nb.IPv4 != rip.Address {
		t.Fatalf("next NodeBalancer = %v, %v; want the released %s", nb, err, rip.Address)
	}
}

// TestCCMRetainedReservedAddressSurvivesServiceDelete: with the default
// retain-reserved-ipv4, deleting the Service keeps the address reserved, and a new
// Service asking for it gets it back.
func TestCCMRetainedReservedAddressSurvivesServiceDelete(t *testing.T) {
	e := newEnv(t)
	rip, err := e.lc.ReserveIPAddress(e.ctx, linodego.ReserveIPOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	svc := ccmService{tags: []string{"demo"}, reservedIPv4: rip.Address, retainReservedIP: true, nodes: []netip.Addr{e.backendIP(1)},
		ports: []ccmPort{{port: 80, nodePort: 30080, protocol: "tcp", proxyProtocol: "none", algorithm: "roundrobin", check: "connection"}}}
	r := &ccmReplay{e: e}
	r.ensure(svc)
	r.delete(svc)
	// Not handed to a Service that does not ask for it...
	other := &ccmReplay{e: e}
	if nb := other.ensure(ccmService{tags: []string{"demo"}, retainReservedIP: true, nodes: svc.nodes, ports: svc.ports}); nb.IPv4 == rip.Address {
		t.Fatalf("a Service without the annotation got the reserved %s", rip.Address)
	}
	// ...given back to one that does.
	again := &ccmReplay{e: e}
	if nb := again.ensure(svc); nb.IPv4 != rip.Address {
		t.Fatalf("the recreated Service got %s, want %s", nb.IPv4, rip.Address)
	}
}

// TestCCMTakesOverANodeBalancerByID: a Service annotated with
// linode-loadbalancer-nodebalancer-id adopts an existing NodeBalancer: the CCM reads
// it by id, sets throttle and tags, and creates its configs (create, then rebuild
// with the create response's fields and the nodes).
func TestCCMTakesOverANodeBalancerByID(t *testing.T) {
	e := newEnv(t)
	n1 := e.backendIP(1)
	e.ccmBackend(ccmNodeName(n1), netip.AddrPortFrom(n1, 30080))
	existing, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("made-by-hand")})
	if err != nil {
		t.Fatal(err)
	}
	svc := ccmService{throttle: 3, tags: []string{"demo"}, nodeBalancerID: existing.ID, retainReservedIP: true, nodes: []netip.Addr{n1},
		ports: []ccmPort{{port: 8080, nodePort: 30080, protocol: "http", proxyProtocol: "none", algorithm: "roundrobin", stickiness: "table", check: "connection"}}}
	r := &ccmReplay{e: e}
	nb := r.ensure(svc)
	if nb.ID != existing.ID || nb.IPv4 != *existing.IPv4 || nb.ClientConnThrottle != 3 || !slices.Equal(nb.Tags, []string{"demo"}) {
		t.Fatalf("adopted %+v, want NodeBalancer %d", nb, existing.ID)
	}
	e.answers(&http.Client{Timeout: 2 * time.Second}, "http://"+nb.IPv4+":8080/", "node-1")
	if nbs, err := e.lc.ListNodeBalancers(e.ctx, nil); err != nil || len(nbs) != 1 {
		t.Fatalf("NodeBalancers: %d, %v; the Service must not create another", len(nbs), err)
	}
}

// TestCCMUDPPortAndFirewallAnnotations replays a Service with a tcp and a udp port
// through the firewall-acl annotation (created with the NodeBalancer, changed,
// removed), then firewall-id (an operator's firewall attached, then the annotation
// removed), then the ACL again and the delete, checking traffic from clients inside
// and outside each allow list.
func TestCCMUDPPortAndFirewallAnnotations(t *testing.T) {
	e := udpEnv(t, 2*time.Second)
	n1 := e.backendIP(1)
	e.ccmBackend(ccmNodeName(n1), netip.AddrPortFrom(n1, 30080))
	e.udpNode(ccmNodeName(n1), 1, 0)
	c1, c2, c3 := e.clientIP(1), e.clientIP(2), e.clientIP(3)
	web := ccmPort{port: 80, nodePort: 30080, protocol: "tcp", proxyProtocol: "none", algorithm: "roundrobin", check: "connection"}
	// The CCM's defaults for a udp port (check none, session stickiness), udp-check-port annotated.
	dns := ccmPort{port: 5353, nodePort: udpPort, protocol: "udp", proxyProtocol: "none", algorithm: "roundrobin",
		stickiness: "session", check: "none", udpCheckPort: 8053} // linode-loadbalancer-udp-check-port: 8053
	svc := ccmService{name: "web", tags: []string{"demo"}, retainReservedIP: true, nodes: []netip.Addr{n1},
		ports: []ccmPort{web, dns}, fwACL: []string{host(c1).String()}}
	r := &ccmReplay{e: e}
	var front80, front5353 netip.AddrPort
	attached := func(nb ccmNB) []linodego.Firewall {
		t.Helper()
		fws, err := e.lc.ListNodeBalancerFirewalls(e.ctx, nb.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return fws
	}
	udpServed := func(src byte) bool {
		_, err := e.udpClient(src).ask(front5353, "who?", 300*time.Millisecond)
		return err == nil
	}
	var ownFW *linodego.Firewall

	steps := []struct {
		name  string
		edit  func(*ccmService)
		check func(nb ccmNB)
	}{
		{"create: tcp 80 + udp 5353, firewall-acl allows client 1 (firewall_id on create)", nil, func(nb ccmNB) {
			front80 = netip.AddrPortFrom(netip.MustParseAddr(nb.IPv4), 80)
			front5353 = netip.AddrPortFrom(netip.MustParseAddr(nb.IPv4), 5353)
			c := linodego.NodeBalancerConfig{}
			cfgs, err := e.lc.ListNodeBalancerConfigs(e.ctx, nb.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range cfgs {
				if x.Port == 5353 {
					c = x
				}
			}
			if c.Protocol != "udp" || c.UDPCheckPort != 8053 || c.CheckPassive || c.Stickiness != "session" || c.Check != "none" {
				t.Fatalf("udp config %+v", c)
			}
			fws := attached(nb)
			if len(fws) != 1 || fws[0].Rules.InboundPolicy != "DROP" || fws[0].Rules.Inbound[0].Ports != "80,5353" {
				t.Fatalf("firewalls %+v", fws)
			}
			untilProbe(t, c1, front80, true)
			mustProbe(t, c2, front80, false)
			// The CCM writes its ACL as TCP rules only ("Nodebalancers support only
			// TCP"), so under an allow list (inbound policy DROP) the udp port is
			// closed to every client, inside the list or not.
			if udpServed(1) || udpServed(2) {
				t.Fatal("udp answered under an ACL of TCP rules and inbound policy DROP")
			}
		}},
		{"firewall-acl changed: client 2 allowed, client 1 not (PUT rules)", func(s *ccmService) {
			s.fwACL = []string{host(c2).String()}
		}, func(nb ccmNB) {
			untilProbe(t, c1, front80, false)
			mustProbe(t, c2, front80, true)
			if fws := attached(nb); len(fws) != 1 || fws[0].Rules.Inbound[0].Addresses.IPv4 == nil || (*fws[0].Rules.Inbound[0].Addresses.IPv4)[0] != host(c2).String() {
				t.Fatalf("firewalls %+v", fws)
			}
		}},
		{"firewall-acl removed: the device and then the unused firewall deleted", func(s *ccmService) {
			s.fwACL = nil
		}, func(nb ccmNB) {
			untilProbe(t, c1, front80, true)
			mustProbe(t, c2, front80, true)
			waitFor(t, 5*time.Second, "udp from client 1 to be answered", func() bool { return udpServed(1) })
			if got := e.udpClient(2).who(t, front5353); got != "node-1" {
				t.Fatalf("udp answered by %q", got)
			}
			if fws, err := e.lc.ListFirewalls(e.ctx, nil); err != nil || len(fws) != 0 || len(attached(nb)) != 0 {
				t.Fatalf("firewalls left: %+v, %v", fws, err)
			}
		}},
		{"firewall-id: the operator's firewall (allows client 3) attached by device create", func(s *ccmService) {
			// Unlike the ACL, the operator's firewall can hold a UDP rule.
			udpRule := rule("ACCEPT", "client3-udp", "5353", host(c3))
			udpRule.Protocol = linodego.UDP
			var err error
			ownFW, err = e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "ops-allow-3",
				Rules: linodego.FirewallRuleSet{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
					Inbound: []linodego.FirewallRule{rule("ACCEPT", "client3-tcp", "80", host(c3)), udpRule}}})
			if err != nil {
				t.Fatal(err)
			}
			s.fwID = ownFW.ID
		}, func(nb ccmNB) {
			untilProbe(t, c1, front80, false)
			mustProbe(t, c3, front80, true)
			if got := e.udpClient(3).who(t, front5353); got != "node-1" {
				t.Fatalf("udp from client 3 answered by %q", got)
			}
			if udpServed(4) {
				t.Fatal("udp from client 4, outside the firewall's UDP rule, was answered")
			}
			if fws := attached(nb); len(fws) != 1 || fws[0].ID != ownFW.ID {
				t.Fatalf("firewalls %+v, want %d", fws, ownFW.ID)
			}
		}},
		{"firewall-id removed: detached (and, unused, deleted, as the CCM does)", func(s *ccmService) {
			s.fwID = 0
		}, func(nb ccmNB) {
			untilProbe(t, c1, front80, true)
			if fws, err := e.lc.ListFirewalls(e.ctx, nil); err != nil || len(fws) != 0 {
				t.Fatalf("firewalls left: %+v, %v", fws, err)
			}
		}},
		{"firewall-acl again on a running Service: created and attached by device create", func(s *ccmService) {
			s.fwACL = []string{host(c3).String()}
		}, func(nb ccmNB) {
			untilProbe(t, c1, front80, false)
			mustProbe(t, c3, front80, true)
			if fws := attached(nb); len(fws) != 1 {
				t.Fatalf("firewalls %+v", fws)
			}
		}},
	}
	for _, st := range steps {
		if st.edit != nil {
			st.edit(&svc)
		}
		st.check(r.ensure(svc))
		t.Logf("%s: ok", st.name)
	}
	r.delete(svc)
	if fws, err := e.lc.ListFirewalls(e.ctx, nil); err != nil || len(fws) != 0 {
		t.Fatalf("firewalls left after the delete: %+v, %v", fws, err)
	}
	if nbs, err := e.lc.ListNodeBalancers(e.ctx, nil); err != nil || len(nbs) != 0 {
		t.Fatalf("NodeBalancers left: %+v, %v", nbs, err)
	}
}
