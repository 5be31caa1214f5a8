package model

import (
	"slices"
	"strings"
	"testing"
)

// scratchRegistry lets a test register values and restores the registry after it.
func scratchRegistry(t *testing.T) {
	t.Helper()
	registry.mu.Lock()
	algos, checks := slices.Clone(registry.algorithms), slices.Clone(registry.checks)
	registry.mu.Unlock()
	t.Cleanup(func() {
		registry.mu.Lock()
		registry.algorithms, registry.checks = algos, checks
		registry.mu.Unlock()
	})
}

func TestLinodeValuesAreRegisteredInDocumentationOrder(t *testing.T) {
	if got := AlgorithmValues(); !slices.Equal(got, []string{"roundrobin", "leastconn", "source", "ring_hash"}) {
		t.Errorf("AlgorithmValues() = %v", got)
	}
	if got := CheckValues(); !slices.Equal(got, []string{"none", "connection", "http", "http_body"}) {
		t.Errorf("CheckValues() = %v", got)
	}
	if got := StickinessValues(); !slices.Equal(got, []string{"none", "table", "http_cookie", "session", "source_ip"}) {
		t.Errorf("StickinessValues() = %v", got)
	}
}

// TestReasonsKeepTheirWording pins the texts clients and the console show, now
// that they are composed from the registry.
func TestReasonsKeepTheirWording(t *testing.T) {
	tests := []struct {
		edit          func(c *Config)
		field, reason string
	}{
		{func(c *Config) { c.Protocol, c.Algorithm = ProtocolUDP, AlgorithmSource }, "algorithm",
			"algorithm source is not available with protocol udp; use roundrobin, leastconn or ring_hash"},
		{func(c *Config) { c.Algorithm = AlgorithmRingHash }, "algorithm", "algorithm ring_hash requires protocol udp"},
		{func(c *Config) { c.Protocol, c.Stickiness = ProtocolTCP, StickinessHTTPCookie }, "stickiness",
			"stickiness http_cookie requires protocol http or https"},
		{func(c *Config) { c.Protocol, c.Stickiness = ProtocolUDP, StickinessTable }, "stickiness",
			"stickiness table is not available with protocol udp; use none, session or source_ip"},
		{func(c *Config) { c.Stickiness = StickinessSourceIP }, "stickiness", "stickiness source_ip requires protocol udp"},
		{func(c *Config) { c.Algorithm = "round_robin" }, "algorithm", "algorithm must be one of roundrobin, leastconn, source, ring_hash"},
		{func(c *Config) { c.Check = "tcp" }, "check", "check must be one of none, connection, http, http_body"},
		{func(c *Config) { c.Check = CheckHTTPBody }, "check_body", "check_body is required when check is http_body"},
	}
	for _, tt := range tests {
		c := NewConfig()
		tt.edit(&c)
		es := ValidateConfig(&c)
		if len(es) != 1 || es[0].Field != tt.field || es[0].Reason != tt.reason {
			t.Errorf("%+v: got %v, want %s: %s", c, es, tt.field, tt.reason)
		}
	}
}

// TestRegisteredValuesAreValidatedByTheRegistry registers an algorithm and a check
// type and finds them everywhere validation looks: the enums, the protocol rules and
// their reasons, the fallback on a protocol change, check_body.
func TestRegisteredValuesAreValidatedByTheRegistry(t *testing.T) {
	scratchRegistry(t)
	RegisterAlgorithm(AlgorithmInfo{Name: "toy_first", Label: "Toy", Protocols: []Protocol{ProtocolTCP}})
	RegisterCheck(CheckInfo{Name: "toy_banner", Label: "Toy Banner", UsesBody: true, Protocols: []Protocol{ProtocolTCP, ProtocolUDP}})

	c := NewConfig()
	c.Protocol, c.Algorithm, c.Check, c.CheckBody = ProtocolTCP, "toy_first", "toy_banner", "^OK"
	if es := ValidateConfig(&c); len(es) > 0 {
		t.Fatalf("tcp with the registered algorithm and check: %v", es)
	}
	c.Protocol = ProtocolHTTP
	es := ValidateConfig(&c)
	want := map[string]string{"algorithm": "algorithm toy_first requires protocol tcp", "check": "check toy_banner requires protocol tcp or udp"}
	if len(es) != 2 {
		t.Fatalf("http with them: %v", es)
	}
	for _, e := range es {
		if want[e.Field] != e.Reason {
			t.Errorf("%s: %q, want %q", e.Field, e.Reason, want[e.Field])
		}
	}
	c.Protocol, c.Algorithm = ProtocolUDP, AlgorithmSource
	if es := ValidateConfig(&c); len(es) != 1 || !strings.HasSuffix(es[0].Reason, "use roundrobin, leastconn or ring_hash") {
		t.Errorf("a tcp-only algorithm is not offered for udp: %v", es)
	}
	c = NewConfig()
	c.Algorithm = "nope"
	if es := ValidateConfig(&c); len(es) != 1 || es[0].Reason != "algorithm must be one of roundrobin, leastconn, source, ring_hash, toy_first" {
		t.Errorf("unknown algorithm: %v", es)
	}
	c = NewConfig()
	c.Protocol, c.Check = ProtocolTCP, "toy_banner"
	if es := ValidateConfig(&c); len(es) != 1 || es[0].Reason != "check_body is required when check is toy_banner" {
		t.Errorf("check_body: %v", es)
	}

	// Moving a tcp config to http without naming them falls back to the defaults.
	c = NewConfig()
	c.Protocol, c.Algorithm, c.Check, c.CheckBody = ProtocolHTTP, "toy_first", "toy_banner", "x"
	reset := FitProtocol(&c, ProtocolTCP, sentSet())
	if !slices.Equal(reset, []string{"algorithm", "check"}) || c.Algorithm != DefaultAlgorithm || c.Check != DefaultCheck {
		t.Errorf("FitProtocol reset %v: %+v", reset, c)
	}
	if got := ValuesFor(AlgorithmOptions(), ProtocolTCP); !slices.Equal(got, []string{"roundrobin", "leastconn", "source", "toy_first"}) {
		t.Errorf("algorithms for tcp: %v", got)
	}
}

func TestRegisterRefusesMistakes(t *testing.T) {
	scratchRegistry(t)
	for name, f := range map[string]func(){
		"duplicate":        func() { RegisterAlgorithm(AlgorithmInfo{Name: AlgorithmSource, Label: "Again"}) },
		"bad name":         func() { RegisterAlgorithm(AlgorithmInfo{Name: "Round Robin", Label: "x"}) },
		"no label":         func() { RegisterCheck(CheckInfo{Name: "quiet"}) },
		"unknown protocol": func() { RegisterCheck(CheckInfo{Name: "quic", Label: "QUIC", Protocols: []Protocol{"quic"}}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
