package api

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// TestConfigPatchKnowsEveryProtocolBoundField guards the one place the API maps
// request fields to model.FitProtocol: a protocol-bound field it does not know would
// be treated as left out, and reset even when the request sends it.
func TestConfigPatchKnowsEveryProtocolBoundField(t *testing.T) {
	sample := map[string]string{
		"algorithm": `"leastconn"`, "stickiness": `"table"`, "check": `"http"`, "proxy_protocol": `"v1"`, "cipher_suite": `"legacy"`,
		"ssl_cert": `"x"`, "ssl_key": `"y"`,
	}
	for _, f := range model.ProtocolBoundFields() {
		v, ok := sample[f]
		if !ok {
			t.Fatalf("protocol-bound field %s has no sample here: add one, and a case to configPatch.sent", f)
		}
		var es model.Errors
		p := readConfig(parseBody([]byte(`{"`+f+`":`+v+`}`), &es, nil))
		if len(es) > 0 || !p.sent(f) {
			t.Errorf("a body giving %s: sent = false (errors %v)", f, es)
		}
		if p2 := readConfig(parseBody([]byte(`{}`), &es, nil)); p2.sent(f) {
			t.Errorf("an empty body: sent(%s) = true", f)
		}
	}
}

// TestProtocolChangeFallsBack drives the rule through PUT and rebuild over HTTP, in
// the shapes linodego sends (omitted fields, <REDACTED> echoed back).
func TestProtocolChangeFallsBack(t *testing.T) {
	e := newEnv(t)
	tc := testcert.New(t, "proto.example.test")
	cert, key := tc.CertPEM, tc.KeyPEM
	nb := e.must("POST", "/v4/nodebalancers", `{"region":"local","label":"proto"}`)
	nbPath := "/v4/nodebalancers/" + itoa(nb["id"])
	cf := e.must("POST", nbPath+"/configs", `{"port":80,"protocol":"http","stickiness":"http_cookie","nodes":[{"label":"node-1","address":"127.0.0.1:8080"}]}`)
	cfPath := nbPath + "/configs/" + itoa(cf["id"])

	// The CCM's rebuild: tcp with proxy_protocol, no stickiness field at all.
	got := e.must("POST", cfPath+"/rebuild", `{"port":80,"protocol":"tcp","proxy_protocol":"v2","algorithm":"roundrobin","check":"connection","nodes":[{"label":"node-1","address":"127.0.0.1:8080","weight":100}]}`)
	if got["protocol"] != "tcp" || got["stickiness"] != "none" || got["proxy_protocol"] != "v2" {
		t.Fatalf("rebuild http+http_cookie → tcp: %v", got)
	}

	// Sending the value the new protocol refuses is still a 400, and changes nothing.
	before := e.snapshot()
	r := e.do("PUT", cfPath, `{"protocol":"http","proxy_protocol":"v1"}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.errs(t)["proxy_protocol"], "requires protocol tcp") {
		t.Fatalf("http with proxy_protocol v1 sent: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("a refused update changed the stored state")
	}

	// tcp+v2 → http leaving proxy_protocol out: it falls back to none.
	got = e.must("PUT", cfPath, `{"protocol":"http"}`)
	if got["protocol"] != "http" || got["proxy_protocol"] != "none" {
		t.Fatalf("tcp+v2 → http: %v", got)
	}

	// http → https with a certificate and cipher legacy; then back to http echoing
	// <REDACTED> as linodego's GetUpdateOptions does: certificate, key and cipher go.
	e.must("PUT", cfPath, `{"protocol":"https","cipher_suite":"legacy","stickiness":"http_cookie","ssl_cert":`+jsonString(cert)+`,"ssl_key":`+jsonString(key)+`}`)
	got = e.must("PUT", cfPath, `{"protocol":"http","ssl_cert":"<REDACTED>","ssl_key":"<REDACTED>"}`)
	if got["ssl_cert"] != nil || got["ssl_key"] != nil || got["cipher_suite"] != "recommended" || got["stickiness"] != "http_cookie" {
		t.Fatalf("https → http: %v", got)
	}
	stored, err := e.db.Config(int(nb["id"].(float64)), int(cf["id"].(float64)))
	if err != nil || stored.SSLCert != "" || stored.SSLKey != "" {
		t.Fatalf("stored after https → http: cert %q key %q, %v", stored.SSLCert, stored.SSLKey, err)
	}

	// http+http_cookie → tcp by PUT without stickiness falls back too; sending it is refused.
	r = e.do("PUT", cfPath, `{"protocol":"tcp","stickiness":"http_cookie"}`)
	if r.status != http.StatusBadRequest || r.errs(t)["stickiness"] == "" {
		t.Fatalf("tcp with http_cookie sent: %d %s", r.status, r.body)
	}
	got = e.must("PUT", cfPath, `{"protocol":"tcp"}`)
	if got["stickiness"] != "none" {
		t.Fatalf("PUT http+http_cookie → tcp: %v", got)
	}
}

// itoa renders a JSON number id as a path segment.
func itoa(v any) string { return strconv.Itoa(int(v.(float64))) }

// TestCreateDropsRedactedCertificateOfNonHTTPSConfig: a create copied from a
// fetched config may echo <REDACTED>; with a protocol other than https it stands for
// nothing and is dropped, while a real certificate sent with http is refused.
func TestCreateDropsRedactedCertificateOfNonHTTPSConfig(t *testing.T) {
	e := newEnv(t)
	nb := e.must("POST", "/v4/nodebalancers", `{"region":"local","label":"redacted"}`)
	nbPath := "/v4/nodebalancers/" + itoa(nb["id"])
	got := e.must("POST", nbPath+"/configs", `{"port":8080,"protocol":"http","ssl_cert":"<REDACTED>","ssl_key":"<REDACTED>"}`)
	if got["ssl_cert"] != nil || got["ssl_key"] != nil {
		t.Fatalf("http config created with <REDACTED>: %v", got)
	}
	tc := testcert.New(t, "redacted.example.test")
	cert, key := tc.CertPEM, tc.KeyPEM
	r := e.do("POST", nbPath+"/configs", `{"port":8081,"protocol":"http","ssl_cert":`+jsonString(cert)+`,"ssl_key":`+jsonString(key)+`}`)
	if r.status != http.StatusBadRequest || r.errs(t)["ssl_cert"] == "" || r.errs(t)["ssl_key"] == "" {
		t.Fatalf("http config with a certificate: %d %s", r.status, r.body)
	}
}
