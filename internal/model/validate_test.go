package model

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

var testPolicy = Policy{Region: "local", BackendRanges: DefaultBackendRanges()}

func TestDefaults(t *testing.T) {
	c := NewConfig()
	want := Config{Port: 80, Protocol: "http", Algorithm: "roundrobin", Stickiness: "none", Check: "none",
		CheckInterval: 31, CheckTimeout: 30, CheckAttempts: 3, CheckPassive: true, ProxyProtocol: "none", CipherSuite: "recommended",
		UDPCheckPort: 80}
	if c != want {
		t.Fatalf("NewConfig() = %+v, want %+v", c, want)
	}
	if errs := ValidateConfig(&c); len(errs) != 0 {
		t.Fatalf("defaults must validate, got %v", errs)
	}
	n := NewNode()
	if n.Weight != 50 || n.Mode != ModeAccept {
		t.Fatalf("NewNode() = %+v, want weight 50 mode accept", n)
	}
}

// fields returns the fields named in es, in order.
func fields(es Errors) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Field)
	}
	return out
}

func sameFields(got Errors, want []string) bool {
	g := fields(got)
	if len(g) != len(want) {
		return false
	}
	for i := range g {
		if g[i] != want[i] {
			return false
		}
	}
	return true
}

func TestValidateNodeBalancer(t *testing.T) {
	ok := NodeBalancer{Label: "web-1_a", Region: "local", Type: TypeCommon}
	tests := []struct {
		name   string
		mutate func(*NodeBalancer)
		fields []string
	}{
		{"valid", func(*NodeBalancer) {}, nil},
		{"label too short", func(n *NodeBalancer) { n.Label = "ab" }, []string{"label"}},
		{"label too long", func(n *NodeBalancer) { n.Label = strings.Repeat("a", 33) }, []string{"label"}},
		{"label 32 ok", func(n *NodeBalancer) { n.Label = strings.Repeat("a", 32) }, nil},
		{"label bad chars", func(n *NodeBalancer) { n.Label = "web.1" }, []string{"label"}},
		{"other region", func(n *NodeBalancer) { n.Region = "us-east" }, []string{"region"}},
		{"throttle 20 ok", func(n *NodeBalancer) { n.ClientConnThrottle = 20 }, nil},
		{"throttle 21", func(n *NodeBalancer) { n.ClientConnThrottle = 21 }, []string{"client_conn_throttle"}},
		{"throttle negative", func(n *NodeBalancer) { n.ClientConnThrottle = -1 }, []string{"client_conn_throttle"}},
		{"premium ok", func(n *NodeBalancer) { n.Type = TypePremium }, nil},
		{"premium_40gb unsupported", func(n *NodeBalancer) { n.Type = "premium_40gb" }, []string{"type"}},
		{"bad type", func(n *NodeBalancer) { n.Type = "huge" }, []string{"type"}},
		{"tags ok", func(n *NodeBalancer) { n.Tags = []string{"prod", "team-a"} }, nil},
		{"tag short", func(n *NodeBalancer) { n.Tags = []string{"ok1", "a"} }, []string{"tags[1]"}},
		{"tag duplicate", func(n *NodeBalancer) { n.Tags = []string{"prod", "prod"} }, []string{"tags[1]"}},
		{"tag control char", func(n *NodeBalancer) { n.Tags = []string{"pr\nod"} }, []string{"tags[0]"}},
		{"all at once", func(n *NodeBalancer) { n.Label = "x"; n.Region = "eu"; n.ClientConnThrottle = 99 },
			[]string{"label", "region", "client_conn_throttle"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nb := ok
			tt.mutate(&nb)
			if got := ValidateNodeBalancer(&nb, testPolicy); !sameFields(got, tt.fields) {
				t.Fatalf("errors %v, want fields %v", got, tt.fields)
			}
		})
	}
}

func TestValidateConfig(t *testing.T) {
	c := testcert.New(t, "www.example.test")
	cert, key := c.CertPEM, c.KeyPEM
	otherCert := testcert.New(t, "other.test").CertPEM
	tests := []struct {
		name   string
		mutate func(*Config)
		fields []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"port 0", func(c *Config) { c.Port = 0 }, []string{"port"}},
		{"port 65535", func(c *Config) { c.Port = 65535 }, nil},
		{"port 65536", func(c *Config) { c.Port = 65536 }, []string{"port"}},
		{"protocol udp", func(c *Config) { c.Protocol = ProtocolUDP }, nil},
		{"udp roundrobin session", func(c *Config) { c.Protocol = ProtocolUDP; c.Stickiness = StickinessSession }, nil},
		{"udp leastconn source_ip", func(c *Config) {
			c.Protocol, c.Algorithm, c.Stickiness = ProtocolUDP, AlgorithmLeastConn, StickinessSourceIP
		}, nil},
		{"udp ring_hash", func(c *Config) { c.Protocol = ProtocolUDP; c.Algorithm = AlgorithmRingHash }, nil},
		{"udp source", func(c *Config) { c.Protocol = ProtocolUDP; c.Algorithm = AlgorithmSource }, []string{"algorithm"}},
		{"udp table", func(c *Config) { c.Protocol = ProtocolUDP; c.Stickiness = StickinessTable }, []string{"stickiness"}},
		{"udp http_cookie", func(c *Config) { c.Protocol = ProtocolUDP; c.Stickiness = StickinessHTTPCookie }, []string{"stickiness"}},
		{"udp with a connection check", func(c *Config) { c.Protocol = ProtocolUDP; c.Check = CheckConnection }, nil},
		{"udp proxy_protocol", func(c *Config) { c.Protocol = ProtocolUDP; c.ProxyProtocol = ProxyProtocolV2 }, []string{"proxy_protocol"}},
		{"tcp session", func(c *Config) { c.Protocol = ProtocolTCP; c.Stickiness = StickinessSession }, []string{"stickiness"}},
		{"protocol bad", func(c *Config) { c.Protocol = "ftp" }, []string{"protocol"}},
		{"algorithm leastconn", func(c *Config) { c.Algorithm = AlgorithmLeastConn }, nil},
		{"algorithm source", func(c *Config) { c.Algorithm = AlgorithmSource }, nil},
		{"algorithm ring_hash on http", func(c *Config) { c.Algorithm = AlgorithmRingHash }, []string{"algorithm"}},
		{"algorithm ring_hash on tcp", func(c *Config) { c.Protocol = ProtocolTCP; c.Algorithm = AlgorithmRingHash }, []string{"algorithm"}},
		{"stickiness table", func(c *Config) { c.Stickiness = StickinessTable }, nil},
		{"stickiness session on http", func(c *Config) { c.Stickiness = StickinessSession }, []string{"stickiness"}},
		{"stickiness source_ip on https", func(c *Config) { c.Protocol = ProtocolHTTPS; c.Stickiness = StickinessSourceIP }, []string{"stickiness", "ssl_cert", "ssl_key"}},
		{"http_cookie on http", func(c *Config) { c.Stickiness = StickinessHTTPCookie }, nil},
		{"http_cookie on tcp", func(c *Config) { c.Protocol = ProtocolTCP; c.Stickiness = StickinessHTTPCookie }, []string{"stickiness"}},
		{"table on tcp", func(c *Config) { c.Protocol = ProtocolTCP; c.Stickiness = StickinessTable }, nil},
		{"check bad", func(c *Config) { c.Check = "ping" }, []string{"check"}},
		{"check_timeout 0", func(c *Config) { c.CheckTimeout = 0 }, []string{"check_timeout"}},
		{"check_timeout 31", func(c *Config) { c.CheckTimeout = 31; c.CheckInterval = 40 }, []string{"check_timeout"}},
		{"interval equal timeout", func(c *Config) { c.CheckInterval = 30 }, []string{"check_interval"}},
		{"interval below timeout", func(c *Config) { c.CheckInterval = 5; c.CheckTimeout = 10 }, []string{"check_interval"}},
		{"interval 5 timeout 3", func(c *Config) { c.CheckInterval = 5; c.CheckTimeout = 3 }, nil},
		{"interval huge", func(c *Config) { c.CheckInterval = 3601 }, []string{"check_interval"}},
		{"attempts 0", func(c *Config) { c.CheckAttempts = 0 }, []string{"check_attempts"}},
		{"attempts 30", func(c *Config) { c.CheckAttempts = 30 }, nil},
		{"attempts 31", func(c *Config) { c.CheckAttempts = 31 }, []string{"check_attempts"}},
		{"check_path ok", func(c *Config) { c.Check = CheckHTTP; c.CheckPath = "/health?full=1&x=%20" }, nil},
		{"check_path bad char", func(c *Config) { c.CheckPath = "/a b" }, []string{"check_path"}},
		{"check_path no slash", func(c *Config) { c.CheckPath = "health" }, []string{"check_path"}},
		{"http_body needs body", func(c *Config) { c.Check = CheckHTTPBody }, []string{"check_body"}},
		{"http_body ok", func(c *Config) { c.Check = CheckHTTPBody; c.CheckBody = "it (works|runs)" }, nil},
		{"check_body bad regex", func(c *Config) { c.Check = CheckHTTPBody; c.CheckBody = "([" }, []string{"check_body"}},
		{"proxy v1 on http", func(c *Config) { c.ProxyProtocol = ProxyProtocolV1 }, []string{"proxy_protocol"}},
		{"proxy v2 on tcp", func(c *Config) { c.Protocol = ProtocolTCP; c.ProxyProtocol = ProxyProtocolV2 }, nil},
		{"proxy bad", func(c *Config) { c.ProxyProtocol = "v3" }, []string{"proxy_protocol"}},
		{"cipher legacy", func(c *Config) { c.CipherSuite = CipherLegacy }, nil},
		{"cipher bad", func(c *Config) { c.CipherSuite = "weak" }, []string{"cipher_suite"}},
		{"https ok", func(c *Config) { c.Protocol = ProtocolHTTPS; c.SSLCert = cert; c.SSLKey = key }, nil},
		{"https missing both", func(c *Config) { c.Protocol = ProtocolHTTPS }, []string{"ssl_cert", "ssl_key"}},
		{"https missing key", func(c *Config) { c.Protocol = ProtocolHTTPS; c.SSLCert = cert }, []string{"ssl_key"}},
		{"https garbage cert", func(c *Config) { c.Protocol = ProtocolHTTPS; c.SSLCert = "nope"; c.SSLKey = key }, []string{"ssl_cert"}},
		{"https garbage key", func(c *Config) { c.Protocol = ProtocolHTTPS; c.SSLCert = cert; c.SSLKey = "nope" }, []string{"ssl_key"}},
		{"https mismatched key", func(c *Config) { c.Protocol = ProtocolHTTPS; c.SSLCert = otherCert; c.SSLKey = key }, []string{"ssl_key"}},
		{"http refuses cert", func(c *Config) { c.SSLCert = cert; c.SSLKey = key }, []string{"ssl_cert", "ssl_key"}},
		{"tcp refuses cert", func(c *Config) { c.Protocol = ProtocolTCP; c.SSLCert = cert }, []string{"ssl_cert"}},
		{"several at once", func(c *Config) { c.Port = -1; c.Algorithm = "x"; c.CheckAttempts = 99 },
			[]string{"port", "algorithm", "check_attempts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig()
			tt.mutate(&c)
			if got := ValidateConfig(&c); !sameFields(got, tt.fields) {
				t.Fatalf("errors %v, want fields %v", got, tt.fields)
			}
		})
	}
}

func TestValidateNode(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Node)
		fields []string
	}{
		{"valid", func(*Node) {}, nil},
		{"label dots ok", func(n *Node) { n.Label = "web.1_a-b" }, nil},
		{"label short", func(n *Node) { n.Label = "ab" }, []string{"label"}},
		{"label bad", func(n *Node) { n.Label = "web/1" }, []string{"label"}},
		{"10/8", func(n *Node) { n.Address = "10.1.2.3:80" }, nil},
		{"172.16/12", func(n *Node) { n.Address = "172.31.255.1:8080" }, nil},
		{"172.32 is public", func(n *Node) { n.Address = "172.32.0.1:80" }, []string{"address"}},
		{"192.168/16", func(n *Node) { n.Address = "192.168.255.5:443" }, nil},
		{"loopback", func(n *Node) { n.Address = "127.0.0.2:80" }, nil},
		{"ipv6 ula", func(n *Node) { n.Address = "[fd00::10]:80" }, nil},
		{"ipv6 loopback", func(n *Node) { n.Address = "[::1]:80" }, nil},
		{"public", func(n *Node) { n.Address = "8.8.8.8:80" }, []string{"address"}},
		{"public v6", func(n *Node) { n.Address = "[2001:db8::1]:80" }, []string{"address"}},
		{"no port", func(n *Node) { n.Address = "10.0.0.1" }, []string{"address"}},
		{"port 0", func(n *Node) { n.Address = "10.0.0.1:0" }, []string{"address"}},
		{"port too big", func(n *Node) { n.Address = "10.0.0.1:70000" }, []string{"address"}},
		{"hostname", func(n *Node) { n.Address = "backend.local:80" }, []string{"address"}},
		{"weight 0", func(n *Node) { n.Weight = 0 }, []string{"weight"}},
		{"weight 255", func(n *Node) { n.Weight = 255 }, nil},
		{"weight 256", func(n *Node) { n.Weight = 256 }, []string{"weight"}},
		{"mode drain", func(n *Node) { n.Mode = ModeDrain }, nil},
		{"mode backup", func(n *Node) { n.Mode = ModeBackup }, nil},
		{"mode reject", func(n *Node) { n.Mode = ModeReject }, nil},
		{"mode bad", func(n *Node) { n.Mode = "standby" }, []string{"mode"}},
		{"all", func(n *Node) { n.Label = ""; n.Address = "x"; n.Weight = 300; n.Mode = "" }, []string{"label", "address", "weight", "mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNode()
			n.Label, n.Address = "web1", "192.168.1.10:80"
			tt.mutate(&n)
			if got := ValidateNode(&n, testPolicy); !sameFields(got, tt.fields) {
				t.Fatalf("errors %v, want fields %v", got, tt.fields)
			}
		})
	}
}

func TestNarrowBackendRanges(t *testing.T) {
	p := Policy{Region: "local", BackendRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	n := Node{Label: "web1", Address: "10.0.0.1:80", Weight: 1, Mode: ModeAccept}
	es := ValidateNode(&n, p)
	if len(es) != 1 || !strings.Contains(es[0].Reason, "127.0.0.0/8") {
		t.Fatalf("want the allowed ranges named in the reason, got %v", es)
	}
}

func TestCertInfo(t *testing.T) {
	cert := testcert.New(t, "www.example.test").CertPEM
	cn, fp := CertInfo(cert)
	if cn != "www.example.test" {
		t.Fatalf("common name %q", cn)
	}
	if len(fp) != 59 || strings.Count(fp, ":") != 19 || strings.ToUpper(fp) != fp {
		t.Fatalf("fingerprint %q is not a colon separated upper-case SHA-1", fp)
	}
	if cn, fp := CertInfo(""); cn != "" || fp != "" {
		t.Fatal("no certificate must give empty info")
	}
}

func TestErrorsMerge(t *testing.T) {
	var es Errors
	es.Merge("configs[0]", Errors{{Field: "port", Reason: "r"}, {Reason: "whole"}})
	if es[0].Field != "configs[0].port" || es[1].Field != "configs[0]" {
		t.Fatalf("merge gave %v", es)
	}
	if (Errors{}).Err() != nil || es.Err() == nil {
		t.Fatal("Err must be nil only when empty")
	}
}
