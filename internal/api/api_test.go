package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// fixture creates one NodeBalancer with one config and one node and returns their
// paths.
func fixture(e *env) (nbPath, cfPath, nodePath string) {
	e.t.Helper()
	nb := e.must("POST", "/v4/nodebalancers", `{"region":"local","label":"fixture","configs":[{"port":80,"nodes":[{"address":"127.0.2.1:80","label":"node-1"}]}]}`)
	nbPath = fmt.Sprintf("/v4/nodebalancers/%v", nb["id"])
	cfgs := e.must("GET", nbPath+"/configs", "")
	cf := cfgs["data"].([]any)[0].(map[string]any)
	cfPath = fmt.Sprintf("%s/configs/%v", nbPath, cf["id"])
	nodes := e.must("GET", cfPath+"/nodes", "")
	n := nodes["data"].([]any)[0].(map[string]any)
	return nbPath, cfPath, fmt.Sprintf("%s/nodes/%v", cfPath, n["id"])
}

// TestRefusedRequestsNameTheFieldAndChangeNothing sends one request per bad-input
// class and checks its status, the fields named in the envelope and that the store
// is exactly as before.
func TestRefusedRequestsNameTheFieldAndChangeNothing(t *testing.T) {
	e := newEnv(t)
	nbPath, cfPath, nodePath := fixture(e)
	cert := testcert.New(t, "a.test")
	certPEM, keyPEM := cert.CertPEM, cert.KeyPEM
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		fields                   []string // every field named, "" for an error without one
		reason                   string   // a substring of some reason
	}{
		{"malformed JSON", "POST", "/v4/nodebalancers", `{"region":"local","label":`, nil, 400, []string{""}, "Malformed JSON"},
		{"trailing garbage", "POST", "/v4/nodebalancers", `{} {}`, nil, 400, []string{""}, "Malformed JSON"},
		{"not an object", "POST", "/v4/nodebalancers", `["label"]`, nil, 400, []string{""}, "JSON object"},
		{"wrong type", "POST", "/v4/nodebalancers", `{"region":"local","label":5}`, nil, 400, []string{"label"}, "must be a string"},
		{"no region", "POST", "/v4/nodebalancers", `{}`, nil, 400, []string{"region"}, "region is required"},
		{"empty body, no region", "POST", "/v4/nodebalancers", ``, nil, 400, []string{"region"}, "region is required"},
		{"null region", "POST", "/v4/nodebalancers", `{"region":null,"label":"fine-label"}`, nil, 400, []string{"region"}, "region is required"},
		{"empty region and a bad label", "POST", "/v4/nodebalancers", `{"region":"","label":"x"}`, nil, 400, []string{"region", "label"}, "region is required"},
		{"several errors at once", "POST", "/v4/nodebalancers", `{"label":"x","client_conn_throttle":99,"region":"us-east"}`, nil, 400,
			[]string{"label", "client_conn_throttle", "region"}, "between 0 and 20"},
		{"nested wrong type", "POST", "/v4/nodebalancers",
			`{"region":"local","configs":[{"nodes":[{"address":"127.0.2.1:80","label":"aaa"},{"address":"127.0.2.2:80","label":"bbb","weight":"x"}]}]}`, nil, 400,
			[]string{"configs[0].nodes[1].weight"}, "integer"},
		{"nested validation", "POST", "/v4/nodebalancers",
			`{"region":"local","label":"nested","configs":[{"port":70000,"nodes":[{"address":"8.8.8.8:80","label":"aaa","weight":0}]}]}`, nil, 400,
			[]string{"configs[0].port", "configs[0].nodes[0].address", "configs[0].nodes[0].weight"}, "outside the allowed backend ranges"},
		{"config not an object", "POST", "/v4/nodebalancers", `{"region":"local","configs":[5]}`, nil, 400, []string{"configs[0]"}, "JSON object"},
		{"fractional integer", "POST", "/v4/nodebalancers", `{"region":"local","client_conn_throttle":1.5}`, nil, 400, []string{"client_conn_throttle"}, "integer"},
		{"huge integer", "POST", nbPath + "/configs", `{"port":1e99}`, nil, 400, []string{"port"}, "integer"},
		{"udp throttle range", "POST", "/v4/nodebalancers", `{"region":"local","client_udp_sess_throttle":21}`, nil, 400,
			[]string{"client_udp_sess_throttle"}, "between 0 and 20"},
		{"udp throttle update range", "PUT", nbPath, `{"client_udp_sess_throttle":-1}`, nil, 400,
			[]string{"client_udp_sess_throttle"}, "between 0 and 20"},
		{"missing firewall", "POST", "/v4/nodebalancers", `{"region":"local","firewall_id":12}`, nil, 400, []string{"firewall_id"}, "does not exist"},
		{"firewall_id not an id", "POST", "/v4/nodebalancers", `{"region":"local","firewall_id":-1}`, nil, 400, []string{"firewall_id"}, "id of a firewall"},
		{"unsupported vpcs", "POST", "/v4/nodebalancers", `{"region":"local","vpcs":[{"subnet_id":1}]}`, nil, 400, []string{"vpcs"}, "not supported"},
		{"unsupported type", "POST", "/v4/nodebalancers", `{"region":"local","type":"premium_40gb"}`, nil, 400, []string{"type"}, "not supported"},
		{"taken ipv4", "POST", "/v4/nodebalancers", `{"region":"local","ipv4":"127.0.1.1"}`, nil, 400, []string{"ipv4"}, "already used"},
		{"bad tag", "POST", "/v4/nodebalancers", `{"region":"local","tags":["ok-tag","x"]}`, nil, 400, []string{"tags[1]"}, "characters"},
		{"tags not strings", "POST", "/v4/nodebalancers", `{"region":"local","tags":[1]}`, nil, 400, []string{"tags[0]"}, "string"},
		{"duplicate label", "POST", "/v4/nodebalancers", `{"region":"local","label":"fixture"}`, nil, 400, []string{"label"}, "already in use"},
		{"udp table", "POST", nbPath + "/configs", `{"port":81,"protocol":"udp","stickiness":"table"}`, nil, 400, []string{"stickiness"}, "not available with protocol udp"},
		{"udp source", "POST", nbPath + "/configs", `{"port":81,"protocol":"udp","algorithm":"source"}`, nil, 400, []string{"algorithm"}, "not available with protocol udp"},
		{"ring_hash", "POST", nbPath + "/configs", `{"port":81,"algorithm":"ring_hash"}`, nil, 400, []string{"algorithm"}, "requires protocol udp"},
		{"source_ip on tcp", "POST", nbPath + "/configs", `{"port":81,"protocol":"tcp","stickiness":"source_ip"}`, nil, 400, []string{"stickiness"}, "requires protocol udp"},
		{"udp_check_port range", "POST", nbPath + "/configs", `{"port":81,"udp_check_port":65536}`, nil, 400, []string{"udp_check_port"}, "between 1 and 65535"},
		{"udp_check_port zero", "PUT", cfPath, `{"udp_check_port":0}`, nil, 400, []string{"udp_check_port"}, "between 1 and 65535"},
		{"udp_check_port type", "PUT", cfPath, `{"udp_check_port":"53"}`, nil, 400, []string{"udp_check_port"}, "integer"},
		{"check_body regex", "POST", nbPath + "/configs", `{"port":81,"check":"http_body","check_body":"(unclosed"}`, nil, 400, []string{"check_body"}, "regular expression"},
		{"check_path characters", "POST", nbPath + "/configs", `{"port":81,"check_path":"/a b"}`, nil, 400, []string{"check_path"}, "check_path"},
		{"interval not above timeout", "POST", nbPath + "/configs", `{"port":81,"check_interval":5,"check_timeout":5}`, nil, 400, []string{"check_interval"}, "greater"},
		{"https without cert", "POST", nbPath + "/configs", `{"port":443,"protocol":"https"}`, nil, 400, []string{"ssl_cert", "ssl_key"}, "required"},
		{"cert on http", "POST", nbPath + "/configs", `{"port":81,"ssl_cert":` + jsonString(certPEM) + `,"ssl_key":` + jsonString(keyPEM) + `}`, nil, 400,
			[]string{"ssl_cert", "ssl_key"}, "only allowed with protocol https"},
		{"redacted on create", "POST", nbPath + "/configs", `{"port":443,"protocol":"https","ssl_cert":"<REDACTED>","ssl_key":"<REDACTED>"}`, nil, 400,
			[]string{"ssl_cert"}, "PEM"},
		{"duplicate port", "POST", nbPath + "/configs", `{"port":80}`, nil, 400, []string{"port"}, "already used"},
		{"port 0 on create", "POST", nbPath + "/configs", `{"port":0}`, nil, 400, []string{"port"}, "port must be between 1 and 65535"},
		{"port 0 on update", "PUT", cfPath, `{"port":0,"check":"none"}`, nil, 400, []string{"port"}, "port must be between 1 and 65535"},
		{"port 0 on rebuild", "POST", cfPath + "/rebuild", `{"port":0,"nodes":[]}`, nil, 400, []string{"port"}, "port must be between 1 and 65535"},
		{"port 0 in NodeBalancer create", "POST", "/v4/nodebalancers", `{"region":"local","configs":[{"port":0}]}`, nil, 400, []string{"configs[0].port"}, "between 1 and 65535"},
		{"proxy protocol on http", "PUT", cfPath, `{"proxy_protocol":"v1"}`, nil, 400, []string{"proxy_protocol"}, "requires protocol tcp"},
		{"nodes in config update", "PUT", cfPath, `{"nodes":[{"address":"127.0.2.5:80","label":"abc"}]}`, nil, 400, []string{"nodes"}, "rebuild"},
		{"rebuild without nodes", "POST", cfPath + "/rebuild", `{"port":80}`, nil, 400, []string{"nodes"}, "required"},
		{"rebuild with null nodes", "POST", cfPath + "/rebuild", `{"nodes":null}`, nil, 400, []string{"nodes"}, "required"},
		{"rebuild unknown node", "POST", cfPath + "/rebuild", `{"nodes":[{"id":999999,"address":"127.0.2.1:80","label":"abc"}]}`, nil, 400, []string{"nodes[0].id"}, "not a node of config"},
		{"rebuild bad config and node", "POST", cfPath + "/rebuild", `{"algorithm":"nope","nodes":[{"address":"127.0.2.1","label":"abc"}]}`, nil, 400,
			[]string{"algorithm", "nodes[0].address"}, "ip:port"},
		{"node public address", "POST", cfPath + "/nodes", `{"address":"8.8.8.8:80","label":"public"}`, nil, 400, []string{"address"}, "outside the allowed backend ranges"},
		{"node without port", "POST", cfPath + "/nodes", `{"address":"10.0.0.1","label":"noport"}`, nil, 400, []string{"address"}, "ip:port"},
		{"node without label", "POST", cfPath + "/nodes", `{"address":"10.0.0.1:80"}`, nil, 400, []string{"label"}, "characters"},
		{"node bad mode", "PUT", nodePath, `{"mode":"sleep"}`, nil, 400, []string{"mode"}, "accept"},
		{"node subnet", "PUT", nodePath, `{"subnet_id":7}`, nil, 400, []string{"subnet_id"}, "not supported"},
		{"node weight", "PUT", nodePath, `{"weight":256}`, nil, 400, []string{"weight"}, "between 1 and 255"},
		{"update label too short", "PUT", nbPath, `{"label":"ab"}`, nil, 400, []string{"label"}, "3-32"},
		{"page zero", "GET", "/v4/nodebalancers?page=0", "", nil, 400, []string{"page"}, "at least 1"},
		{"page not a number", "GET", "/v4/nodebalancers?page=two", "", nil, 400, []string{"page"}, "integer"},
		{"page_size small", "GET", "/v4/nodebalancers?page_size=24", "", nil, 400, []string{"page_size"}, "between 25 and 500"},
		{"page_size large", "GET", "/v4/nodebalancers?page_size=501", "", nil, 400, []string{"page_size"}, "between 25 and 500"},
		{"filter bad JSON", "GET", "/v4/nodebalancers", "", []string{"X-Filter", `{"label":`}, 400, []string{""}, "not valid JSON"},
		{"filter unknown field", "GET", "/v4/nodebalancers", "", []string{"X-Filter", `{"hostname":"x"}`}, 400, []string{""}, "Cannot filter on \"hostname\""},
		{"filter bad operator", "GET", "/v4/nodebalancers", "", []string{"X-Filter", `{"label":{"+like":"x"}}`}, 400, []string{""}, "Unknown filter operator"},
		{"filter wrong type", "GET", cfPath + "/nodes", "", []string{"X-Filter", `{"weight":"50"}`}, 400, []string{""}, "integer"},
		{"filter gt on text", "GET", "/v4/nodebalancers", "", []string{"X-Filter", `{"label":{"+gt":"a"}}`}, 400, []string{""}, "text field"},
		{"filter order", "GET", "/v4/nodebalancers", "", []string{"X-Filter", `{"+order_by":"label","+order":"up"}`}, 400, []string{""}, "asc or desc"},
		{"unknown path", "GET", "/v4/nodebalancer", "", nil, 404, []string{""}, "Not found"},
		{"other version", "GET", "/v3/nodebalancers", "", nil, 404, []string{""}, "Not found"},
		{"non-numeric id", "GET", "/v4/nodebalancers/abc", "", nil, 404, []string{""}, "Not found"},
		{"zero id", "GET", "/v4/nodebalancers/0", "", nil, 404, []string{""}, "Not found"},
		{"missing NodeBalancer", "GET", "/v4/nodebalancers/999999", "", nil, 404, []string{""}, "Not found"},
		{"missing config", "PUT", nbPath + "/configs/999999", `{}`, nil, 404, []string{""}, "Not found"},
		{"missing node", "DELETE", cfPath + "/nodes/999999", "", nil, 404, []string{""}, "Not found"},
		{"node under missing config", "POST", nbPath + "/configs/999999/nodes", `{"address":"10.0.0.1:80","label":"abc"}`, nil, 404, []string{""}, "Not found"},
		{"configs of missing NodeBalancer", "POST", "/v4/nodebalancers/999999/configs", `{"port":1}`, nil, 404, []string{""}, "Not found"},
		{"method not allowed", "DELETE", "/v4/nodebalancers", "", nil, 405, []string{""}, "not allowed"},
		{"body too large", "POST", "/v4/nodebalancers", `{"region":"local","label":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, nil, 413, []string{""}, "too large"},
		{"token bad scopes", "POST", "/v4/profile/tokens", `{"scopes":"nodebalancers"}`, nil, 400, []string{"scopes"}, "unknown scope"},
		{"token bad expiry", "POST", "/v4/profile/tokens", `{"expiry":"tomorrow"}`, nil, 400, []string{"expiry"}, "YYYY-MM-DDTHH:MM:SS"},
		{"token label control", "POST", "/v4/profile/tokens", `{"label":"a\u0007b"}`, nil, 400, []string{"label"}, "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.do(tt.method, tt.path, tt.body, tt.hdr...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			got := r.errs(t)
			var fields []string
			found := false
			for f, reason := range got {
				fields = append(fields, f)
				found = found || strings.Contains(reason, tt.reason)
			}
			slices.Sort(fields)
			want := slices.Clone(tt.fields)
			slices.Sort(want)
			if !slices.Equal(fields, want) {
				t.Errorf("fields %q, want %q (%s)", fields, want, r.body)
			}
			if !found {
				t.Errorf("no reason mentions %q: %s", tt.reason, r.body)
			}
			if after := e.snapshot(); after != before {
				t.Errorf("a refused request changed the store")
			}
		})
	}
}

func TestMethodNotAllowedListsAllowedMethods(t *testing.T) {
	e := newEnv(t)
	for path, want := range map[string]string{
		"/v4/nodebalancers":                      "GET, POST",
		"/v4/nodebalancers/1":                    "GET, PUT, DELETE",
		"/v4/nodebalancers/1/configs/2/rebuild":  "POST",
		"/v4beta/profile/tokens/3":               "GET, PUT, DELETE",
		"/v4/nodebalancers/types":                "GET",
		"/v4/nodebalancers/1/configs/2/nodes/3/": "GET, PUT, DELETE",
	} {
		r := e.do("PATCH", path, "{}")
		if r.status != 405 || r.header.Get("Allow") != want {
			t.Errorf("PATCH %s: %d Allow %q, want 405 %q", path, r.status, r.header.Get("Allow"), want)
		}
	}
}

func TestAcceptedRequests(t *testing.T) {
	e := newEnv(t)
	nbPath, cfPath, nodePath := fixture(e)

	// Fields newer clients send with zero values are accepted, read-only echoes ignored.
	nb := e.must("POST", "/v4/nodebalancers", `{"label":"zeros","client_udp_sess_throttle":0,"firewall_id":0,"vpcs":[],"type":"",
		"tags":null,"id":12345,"hostname":"x","ipv6":null,"transfer":{"in":1},"region":"local","ipv4":"127.0.1.200"}`)
	if nb["id"] == 12345.0 || nb["ipv4"] != "127.0.1.200" || nb["hostname"] != "127-0-1-200.ip.linodeusercontent.com" {
		t.Fatalf("created %v", nb)
	}
	for k, want := range map[string]any{"tags": []any{}, "locks": []any{}, "ipv6": nil, "client_udp_sess_throttle": 0.0, "type": "common"} {
		if fmt.Sprint(nb[k]) != fmt.Sprint(want) || (want != nil && nb[k] == nil) {
			t.Errorf("%s = %#v, want %#v", k, nb[k], want)
		}
	}
	tr := nb["transfer"].(map[string]any)
	if tr["in"] != 0.0 || tr["out"] != 0.0 || tr["total"] != 0.0 {
		t.Errorf("transfer %v", tr)
	}

	// Tags: set, then null clears them.
	got := e.must("PUT", nbPath, `{"tags":["alpha","beta"]}`)
	if fmt.Sprint(got["tags"]) != "[alpha beta]" || got["label"] != "fixture" {
		t.Fatalf("tags set: %v", got)
	}
	got = e.must("PUT", nbPath, `{"tags":null}`)
	if fmt.Sprint(got["tags"]) != "[]" {
		t.Fatalf("tags null: %v", got["tags"])
	}

	// A config echoed back whole, read-only fields included, is accepted unchanged.
	cf := e.must("GET", cfPath, "")
	if cf["ssl_cert"] != nil || cf["ssl_key"] != nil || cf["ssl_commonname"] != "" || cf["udp_check_port"] != 80.0 || cf["udp_session_timeout"] != 2.0 {
		t.Fatalf("config without TLS: %v", cf)
	}
	echo, _ := json.Marshal(cf)
	again := e.must("PUT", cfPath, string(echo))
	if fmt.Sprint(again) != fmt.Sprint(cf) {
		t.Fatalf("echoed config changed it:\n%v\n%v", cf, again)
	}
	n := e.must("GET", nodePath, "")
	n["status"], n["id"], n["config_id"] = "UP", 424242, 1
	echo, _ = json.Marshal(n)
	n2 := e.must("PUT", nodePath, string(echo))
	if n2["status"] != "Unknown" || n2["id"] == 424242.0 {
		t.Fatalf("read-only node fields were taken from the body: %v", n2)
	}

	// The v4beta alias, and a trailing slash.
	if r := e.do("GET", "/v4beta/nodebalancers/", ""); r.status != 200 {
		t.Fatalf("v4beta: %d", r.status)
	}
	// DELETE answers {} like Linode.
	if r := e.do("DELETE", nodePath, ""); r.status != 200 || string(r.body) != "{}" {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
}

func TestPaginationEnvelope(t *testing.T) {
	e := newEnv(t)
	for i := range 30 {
		e.must("POST", "/v4/nodebalancers", fmt.Sprintf(`{"region":"local","label":"p-%02d"}`, i))
	}
	tests := []struct {
		query                 string
		page, pages, n, first int
	}{
		{"", 1, 1, 30, 0},
		{"?page_size=25", 1, 2, 25, 0},
		{"?page_size=25&page=2", 2, 2, 5, 25},
		{"?page_size=25&page=3", 3, 2, 0, -1},
		{"?page=99999999999", 99999999999, 1, 0, -1},
	}
	for _, tt := range tests {
		r := e.must("GET", "/v4/nodebalancers"+tt.query, "")
		data := r["data"].([]any)
		if r["page"] != float64(tt.page) || r["pages"] != float64(tt.pages) || r["results"] != 30.0 || len(data) != tt.n {
			t.Errorf("%s: page %v pages %v results %v len %d", tt.query, r["page"], r["pages"], r["results"], len(data))
			continue
		}
		if tt.first >= 0 && data[0].(map[string]any)["label"] != fmt.Sprintf("p-%02d", tt.first) {
			t.Errorf("%s: first item %v", tt.query, data[0])
		}
	}
	// An empty collection still has one (empty) page.
	empty := e.do("GET", "/v4/nodebalancers", "", "X-Filter", `{"label":"none"}`).json(t)
	if empty["pages"] != 1.0 || empty["results"] != 0.0 || len(empty["data"].([]any)) != 0 {
		t.Fatalf("empty page: %v", empty)
	}
}

func TestAuthStatuses(t *testing.T) {
	e := newEnv(t)
	nbPath, _, _ := fixture(e)
	ro := e.must("POST", "/v4/profile/tokens", `{"label":"ro","scopes":"nodebalancers:read_only"}`)["token"].(string)
	tests := []struct {
		name, token, method, path, body string
		status                          int
		reason                          string
	}{
		{"no token", "", "GET", "/v4/nodebalancers", "", 401, "Invalid Token"},
		{"unknown token", "nope-nope-nope-nope", "GET", nbPath, "", 401, "Invalid Token"},
		{"no token on a missing path still 404", "", "GET", "/v4/nope", "", 404, "Not found"},
		{"read_only reads", ro, "GET", nbPath + "/configs", "", 200, ""},
		{"read_only writes", ro, "PUT", nbPath, `{"label":"new-label"}`, 403, "not authorized"},
		{"read_only deletes", ro, "DELETE", nbPath, "", 403, "not authorized"},
		{"read_only lists tokens", ro, "GET", "/v4/profile/tokens", "", 403, "not authorized"},
		{"types are public", "", "GET", "/v4/nodebalancers/types", "", 200, ""},
	}
	for _, tt := range tests {
		before := e.snapshot()
		r := e.doAs(tt.token, tt.method, tt.path, tt.body)
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, r.status, tt.status, r.body)
			continue
		}
		if tt.reason != "" {
			for f, reason := range r.errs(t) {
				if f != "" || !strings.Contains(reason, tt.reason) {
					t.Errorf("%s: error %q %q", tt.name, f, reason)
				}
			}
		}
		if e.snapshot() != before {
			t.Errorf("%s changed the store", tt.name)
		}
	}
	// The Authorization scheme is case-insensitive; other schemes are refused.
	if r := e.doAs("", "GET", "/v4/nodebalancers", "", "Authorization", "bearer "+e.token); r.status != 200 {
		t.Errorf("lower-case bearer: %d", r.status)
	}
	if r := e.doAs("", "GET", "/v4/nodebalancers", "", "Authorization", "Basic "+e.token); r.status != 401 {
		t.Errorf("basic auth: %d", r.status)
	}
}

func TestTokensAreStoredHashed(t *testing.T) {
	e := newEnv(t)
	r := e.must("POST", "/v4/profile/tokens", `{"label":"h","scopes":"nodebalancers:read_write","expiry":"2999-01-02T03:04:05"}`)
	secret := r["token"].(string)
	if r["expiry"] != "2999-01-02T03:04:05" {
		t.Fatalf("expiry shown as %v", r["expiry"])
	}
	toks, _ := e.db.Tokens()
	for _, tk := range toks {
		b, _ := json.Marshal(tk)
		if strings.Contains(string(b), secret) || strings.Contains(string(b), e.token) {
			t.Fatalf("a secret is stored in clear: %s", b)
		}
	}
	list := e.must("GET", "/v4/profile/tokens", "")
	for _, it := range list["data"].([]any) {
		shown := it.(map[string]any)["token"].(string)
		if shown == secret || shown == e.token || len(shown) != 16 {
			t.Fatalf("list shows %q", shown)
		}
	}
}

func TestBootstrap(t *testing.T) {
	tests := []struct {
		name, secret string
		ok           bool
	}{
		{"generated", "", true},
		{"given", "0123456789abcdef-given", true},
		{"too short", "short-secret", false},
		{"with a space", "0123456789 abcdef", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := teststore.New(t, apiPool)
			defer db.Close()
			got, err := Bootstrap(db, tt.secret)
			if !tt.ok {
				if err == nil {
					t.Fatalf("Bootstrap(%q) accepted", tt.secret)
				}
				if has, _ := db.HasTokens(); has {
					t.Fatal("a refused bootstrap stored a token")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.secret != "" && got != tt.secret || tt.secret == "" && len(got) != 64 {
				t.Fatalf("Bootstrap returned %q", got)
			}
			toks, _ := db.Tokens()
			if len(toks) != 1 || toks[0].Scopes != "*" || toks[0].Label != "bootstrap" || toks[0].Hash != hashToken(got) ||
				len(toks[0].Prefix)*4 > len(got) {
				t.Fatalf("stored %+v", toks)
			}
			if again, err := Bootstrap(db, tt.secret); again != "" || err != nil {
				t.Fatalf("second Bootstrap = %q, %v", again, err)
			}
		})
	}
}

func TestParseScopes(t *testing.T) {
	tests := []struct {
		in, norm string
		ok       bool
	}{
		{"*", "*", true},
		{"nodebalancers:read_only", "nodebalancers:read_only", true},
		{"nodebalancers:read_only,nodebalancers:read_write", "nodebalancers:read_write", true},
		{"linodes:read_only nodebalancers:read_write", "linodes:read_only,nodebalancers:read_write", true},
		{"nodebalancers:read_only, *", "*", true},
		{"", "", false},
		{"nodebalancers", "", false},
		{"nodebalancers:write", "", false},
		{"balancers:read_only", "", false},
	}
	for _, tt := range tests {
		_, norm, err := parseScopes(tt.in)
		if (err == nil) != tt.ok || norm != tt.norm {
			t.Errorf("parseScopes(%q) = %q, %v", tt.in, norm, err)
		}
	}
	all, _, _ := parseScopes("*")
	rw, _, _ := parseScopes("nodebalancers:read_write")
	ro, _, _ := parseScopes("nodebalancers:read_only")
	other, _, _ := parseScopes("linodes:read_only")
	cases := []struct {
		a, b scopeSet
		want bool
	}{{all, rw, true}, {rw, all, false}, {rw, ro, true}, {ro, rw, false}, {rw, other, false}, {all, other, true}}
	for i, c := range cases {
		if c.a.covers(c.b) != c.want {
			t.Errorf("case %d: covers = %v", i, !c.want)
		}
	}
	if !ro.allows("nodebalancers", levelReadOnly) || ro.allows("nodebalancers", levelReadWrite) || other.allows("nodebalancers", levelReadOnly) {
		t.Error("allows")
	}
}

// TestNodeStatusShown checks status and nodes_status with a health source: reject is
// always DOWN whatever the checker says.
func TestNodeStatusShown(t *testing.T) {
	st := newStatusSource()
	e := newEnv(t, func(o *Options) { o.Status = st })
	_, cfPath, nodePath := fixture(e)
	n := e.must("GET", nodePath, "")
	id := int(n["id"].(float64))
	for _, tt := range []struct {
		checker model.NodeStatus
		mode    string
		want    string
		up      float64
	}{
		{model.StatusUp, "accept", "UP", 1},
		{model.StatusDown, "accept", "DOWN", 0},
		{"", "accept", "Unknown", 0},
		{model.StatusUp, "reject", "DOWN", 0},
		{model.StatusUp, "backup", "UP", 1},
	} {
		st.set(id, tt.checker)
		e.must("PUT", nodePath, `{"mode":"`+tt.mode+`"}`)
		n := e.must("GET", nodePath, "")
		cf := e.must("GET", cfPath, "")
		ns := cf["nodes_status"].(map[string]any)
		if n["status"] != tt.want || ns["up"] != tt.up {
			t.Errorf("checker %q mode %s: status %v nodes_status %v", tt.checker, tt.mode, n["status"], ns)
		}
	}
}

// listenerSource answers every config's listener status with st.
type listenerSource struct{ st model.ListenerStatus }

func (l listenerSource) ListenerStatus(int) model.ListenerStatus { return l.st }

// TestListenerStatusShown checks the config's "listener" field (not Linode's): absent
// without a source, the data plane's word with one, and ignored when echoed back.
func TestListenerStatusShown(t *testing.T) {
	plain := newEnv(t)
	_, cfPath, _ := fixture(plain)
	if cf := plain.must("GET", cfPath, ""); cf["listener"] != nil {
		t.Errorf("listener without a source: %v", cf["listener"])
	}

	since := time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) {
		o.Listeners = listenerSource{model.ListenerStatus{State: model.ListenerFailed, Address: "127.0.1.1:80",
			Error: "listen tcp 127.0.1.1:80: bind: address already in use", Since: since, Attempts: 3}}
	})
	_, cfPath, _ = fixture(e)
	r := e.do("GET", cfPath, "")
	cf := r.json(t)
	l, _ := cf["listener"].(map[string]any)
	if l["state"] != "failed" || l["address"] != "127.0.1.1:80" || l["since"] != "2026-11-30T17:00:00" ||
		l["attempts"] != 3.0 || !strings.Contains(l["error"].(string), "address already in use") {
		t.Errorf("listener %v", cf["listener"])
	}
	list := e.must("GET", cfPath[:strings.LastIndex(cfPath, "/")], "")
	if l := list["data"].([]any)[0].(map[string]any)["listener"].(map[string]any); l["state"] != "failed" {
		t.Errorf("listed config's listener %v", l)
	}
	// A client that sends back what it read (the console does) is not refused.
	if r := e.do("PUT", cfPath, string(r.body)); r.status != http.StatusOK {
		t.Errorf("PUT of the config as read: %d %s", r.status, r.body)
	}
}

// panicSource panics, standing for a bug in a plugged-in source.
type panicSource struct{}

func (panicSource) NodeBalancerStats(int, url.Values) (any, error) { panic("boom with secret detail") }

type errSource struct{}

func (errSource) NodeBalancerStats(int, url.Values) (any, error) {
	return nil, fmt.Errorf("disk on fire at /var/secret")
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	for name, src := range map[string]StatsSource{"panic": panicSource{}, "error": errSource{}} {
		e := newEnv(t, func(o *Options) { o.Stats = src })
		nbPath, _, _ := fixture(e)
		r := e.do("GET", nbPath+"/stats", "")
		if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "secret") {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
		if got := r.errs(t); got[""] != "Internal server error" {
			t.Errorf("%s: %v", name, got)
		}
	}
}

// BenchmarkGetNodeBalancer measures one authenticated GET through the handler: the
// token lookup (a hash and a map read) plus a store read and the JSON answer.
func BenchmarkGetNodeBalancer(b *testing.B) {
	e := newEnv(b)
	nb := e.must("POST", "/v4/nodebalancers", `{"region":"local","label":"bench"}`)
	path := fmt.Sprintf("/v4/nodebalancers/%v", nb["id"])
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		e.api.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkAuthorize measures the token check every API call pays.
func BenchmarkAuthorize(b *testing.B) {
	e := newEnv(b)
	req := httptest.NewRequest("GET", "/v4/nodebalancers", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	b.ReportAllocs()
	for b.Loop() {
		if err := e.api.authorize(&call{a: e.api, r: req}, readNB); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRequireReadGuardsWithTheAPIsTokens(t *testing.T) {
	e := newEnv(t)
	ro := e.must("POST", "/v4/profile/tokens", `{"label":"ro","scopes":"nodebalancers:read_only"}`)["token"].(string)
	other := e.must("POST", "/v4/profile/tokens", `{"label":"other","scopes":"linodes:read_write"}`)["token"].(string)
	h := e.api.RequireRead(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("metrics")) }))
	for _, tt := range []struct {
		name, token string
		status      int
		body        string
	}{
		{"bootstrap token", e.token, 200, "metrics"},
		{"read_only token", ro, 200, "metrics"},
		{"no nodebalancers scope", other, 403, "not authorized"},
		{"unknown token", "nope-nope-nope-nope", 401, "Invalid Token"},
		{"no token", "", 401, "Invalid Token"},
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		if tt.token != "" {
			r.Header.Set("Authorization", "Bearer "+tt.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("%s: %d %s, want %d %s", tt.name, rec.Code, rec.Body, tt.status, tt.body)
		}
	}
}

// TestUnknownFieldsAreIgnoredAndLogged: fields this server does not know are ignored,
// as the live API ignores them (linode_api4's fixtures send "firewall" on create), and
// named — never their values — in the request's debug log line. Known fields with a
// value the server does not support are still refused by name.
func TestUnknownFieldsAreIgnoredAndLogged(t *testing.T) {
	var logBuf syncBuffer
	e := newEnv(t, func(o *Options) {
		o.Log = slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	nb := e.must("POST", "/v4/nodebalancers", `{"region":"local","label":"ignoring","firewall":4242,"labl":"typo",
		"configs":[{"port":8080,"future_knob":"secret-value","nodes":[{"address":"127.0.2.1:80","label":"n-1","tags":["x"]}]}]}`)
	if nb["label"] != "ignoring" {
		t.Fatalf("created %v", nb)
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["method"] == "POST" {
			line = m
		}
	}
	want := `[configs[0].future_knob configs[0].nodes[0].tags firewall labl]`
	if line == nil || fmt.Sprint(line["ignored_fields"]) != want {
		t.Fatalf("log line %v, want ignored_fields %s", line, want)
	}
	// 4242 as a number of its own: the line's duration in nanoseconds may contain it.
	if strings.Contains(logBuf.String(), "secret-value") || regexp.MustCompile(`(^|[^0-9])4242([^0-9]|$)`).MatchString(logBuf.String()) {
		t.Fatalf("a value of an ignored field was logged: %s", logBuf.String())
	}
	nbPath := fmt.Sprintf("/v4/nodebalancers/%v", nb["id"])
	if got := e.must("PUT", nbPath, `{"firewall_id":3,"label":"renamed"}`); got["label"] != "renamed" {
		t.Fatalf("update with an unknown field: %v", got)
	}
	if got := e.must("PUT", "/v4/profile/tokens/1", `{"lable":"x","label":"boot"}`); got["label"] != "boot" {
		t.Fatalf("token update with an unknown field: %v", got)
	}
	// Known fields with unsupported values: still a 400 naming the field.
	for body, field := range map[string]string{
		`{"region":"local","firewall_id":12}`:                                    "firewall_id",
		`{"region":"local","vpcs":[{"subnet_id":1}]}`:                            "vpcs",
		`{"region":"local","configs":[{"protocol":"udp","stickiness":"table"}]}`: "configs[0].stickiness",
	} {
		r := e.do("POST", "/v4/nodebalancers", body)
		if r.status != 400 || r.errs(t)[field] == "" {
			t.Errorf("%s: %d %s, want 400 naming %s", body, r.status, r.body, field)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
