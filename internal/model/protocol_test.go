package model

import (
	"slices"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// sentSet is a request's given fields, for FitProtocol.
func sentSet(fields ...string) func(string) bool {
	return func(f string) bool { return slices.Contains(fields, f) }
}

func TestFitProtocolFallsBackOnlyForFieldsLeftOut(t *testing.T) {
	tc := testcert.New(t, "fit.example.test")
	cert, key := tc.CertPEM, tc.KeyPEM
	https := NewConfig()
	https.Protocol, https.SSLCert, https.SSLKey, https.CipherSuite = ProtocolHTTPS, cert, key, CipherLegacy
	https.Stickiness = StickinessHTTPCookie
	tcpV2 := NewConfig()
	tcpV2.Protocol, tcpV2.ProxyProtocol, tcpV2.Stickiness = ProtocolTCP, ProxyProtocolV2, StickinessTable
	httpCookie := NewConfig()
	httpCookie.Stickiness = StickinessHTTPCookie
	udpRing := NewConfig()
	udpRing.Protocol, udpRing.Algorithm, udpRing.Stickiness = ProtocolUDP, AlgorithmRingHash, StickinessSourceIP
	tcpSource := NewConfig()
	tcpSource.Protocol, tcpSource.Algorithm, tcpSource.Stickiness = ProtocolTCP, AlgorithmSource, StickinessTable

	tests := []struct {
		name   string
		stored Config
		edit   func(*Config) // the request's values, written over the stored ones
		sent   []string
		reset  []string
		errs   []string // ValidateConfig's fields after FitProtocol
		check  func(Config) bool
	}{
		{"http+http_cookie to tcp without stickiness (the CCM's rebuild)", httpCookie,
			func(c *Config) { c.Protocol, c.ProxyProtocol = ProtocolTCP, ProxyProtocolV2 }, []string{"proxy_protocol"},
			[]string{"stickiness"}, nil,
			func(c Config) bool { return c.Stickiness == StickinessNone && c.ProxyProtocol == ProxyProtocolV2 }},
		{"http+http_cookie to tcp sending http_cookie is refused", httpCookie,
			func(c *Config) { c.Protocol = ProtocolTCP }, []string{"stickiness"},
			nil, []string{"stickiness"}, nil},
		{"https to http drops certificate, key and cipher, keeps http_cookie", https,
			func(c *Config) { c.Protocol = ProtocolHTTP }, nil,
			[]string{"ssl_cert", "ssl_key", "cipher_suite"}, nil,
			func(c Config) bool {
				return c.SSLCert == "" && c.SSLKey == "" && c.CipherSuite == CipherRecommended && c.Stickiness == StickinessHTTPCookie
			}},
		{"https to tcp drops certificate, key, cipher and http_cookie", https,
			func(c *Config) { c.Protocol = ProtocolTCP }, nil,
			[]string{"stickiness", "ssl_cert", "ssl_key", "cipher_suite"}, nil,
			func(c Config) bool { return c.Stickiness == StickinessNone }},
		{"https to http sending the certificate is refused", https,
			func(c *Config) { c.Protocol = ProtocolHTTP }, []string{"ssl_cert"},
			[]string{"ssl_key", "cipher_suite"}, []string{"ssl_cert"}, nil},
		{"https to http sending cipher legacy keeps it", https,
			func(c *Config) { c.Protocol = ProtocolHTTP }, []string{"cipher_suite"},
			[]string{"ssl_cert", "ssl_key"}, nil,
			func(c Config) bool { return c.CipherSuite == CipherLegacy }},
		{"tcp+v2 to http drops proxy_protocol, keeps table", tcpV2,
			func(c *Config) { c.Protocol = ProtocolHTTP }, nil,
			[]string{"proxy_protocol"}, nil,
			func(c Config) bool { return c.ProxyProtocol == ProxyProtocolNone && c.Stickiness == StickinessTable }},
		{"tcp+v2 to http sending v1 is refused", tcpV2,
			func(c *Config) { c.Protocol, c.ProxyProtocol = ProtocolHTTP, ProxyProtocolV1 }, []string{"proxy_protocol"},
			nil, []string{"proxy_protocol"}, nil},
		{"tcp to https without a certificate is refused", tcpV2,
			func(c *Config) { c.Protocol, c.ProxyProtocol = ProtocolHTTPS, ProxyProtocolNone }, []string{"proxy_protocol"},
			nil, []string{"ssl_cert", "ssl_key"}, nil},
		{"udp+ring_hash+source_ip to tcp drops both", udpRing,
			func(c *Config) { c.Protocol = ProtocolTCP }, nil,
			[]string{"algorithm", "stickiness"}, nil,
			func(c Config) bool { return c.Algorithm == AlgorithmRoundRobin && c.Stickiness == StickinessNone }},
		{"tcp+source+table to udp drops both", tcpSource,
			func(c *Config) { c.Protocol = ProtocolUDP }, nil,
			[]string{"algorithm", "stickiness"}, nil,
			func(c Config) bool { return c.Algorithm == AlgorithmRoundRobin && c.Stickiness == StickinessNone }},
		{"udp to tcp sending source_ip is refused", udpRing,
			func(c *Config) { c.Protocol = ProtocolTCP }, []string{"stickiness"},
			[]string{"algorithm"}, []string{"stickiness"}, nil},
		{"same protocol: nothing falls back", httpCookie,
			func(c *Config) { c.Algorithm = AlgorithmSource }, nil, nil, nil, nil},
		{"same protocol: a stored value that does not fit stays refused", tcpV2,
			func(c *Config) { c.Stickiness = StickinessHTTPCookie }, nil, nil, []string{"stickiness"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.stored
			before := c.Protocol
			tt.edit(&c)
			got := FitProtocol(&c, before, sentSet(tt.sent...))
			if !slices.Equal(got, tt.reset) {
				t.Errorf("reset %v, want %v", got, tt.reset)
			}
			if es := ValidateConfig(&c); !sameFields(es, tt.errs) {
				t.Errorf("ValidateConfig after FitProtocol = %v, want fields %v", es, tt.errs)
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("config after FitProtocol: %+v", c)
			}
		})
	}
}

// TestEveryProtocolRuleIsValidatedOrFallsBack makes sure each rule's reset yields a
// value that fits every protocol, so a fallback can never itself be refused.
func TestEveryProtocolRuleIsValidatedOrFallsBack(t *testing.T) {
	for _, r := range protocolRules {
		for _, p := range ProtocolValues {
			c := NewConfig()
			c.Protocol = Protocol(p)
			c.SSLCert, c.SSLKey, c.CipherSuite = "x", "y", CipherLegacy
			c.Stickiness, c.ProxyProtocol = StickinessHTTPCookie, ProxyProtocolV1
			if p == string(ProtocolUDP) {
				c.Algorithm = AlgorithmSource
			} else {
				c.Algorithm = AlgorithmRingHash
			}
			r.reset(&c)
			if !r.fits(&c) {
				t.Errorf("rule %s: the value reset gives does not fit protocol %s", r.field, p)
			}
		}
	}
	if got := ProtocolBoundFields(); !slices.Equal(got, []string{"proxy_protocol", "algorithm", "stickiness", "check", "ssl_cert", "ssl_key", "cipher_suite"}) {
		t.Errorf("ProtocolBoundFields() = %v", got)
	}
}
