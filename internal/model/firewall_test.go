package model

import (
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []PortRange
		bad  string // part of the reason when invalid
	}{
		{"80", []PortRange{{80, 80}}, ""},
		{"22-24, 80, 443", []PortRange{{22, 24}, {80, 80}, {443, 443}}, ""},
		{"1,65535", []PortRange{{1, 1}, {65535, 65535}}, ""},
		{"080", nil, "no leading zeros"},
		{"0", nil, "1-65535"},
		{"65536", nil, "1-65535"},
		{"80,  443", nil, "not a port"}, // one space after a comma, not two
		{" 80", nil, "not a port"},
		{"80,", nil, "not a port"},
		{"24-22", nil, "must end above"},
		{"22-22", nil, "must end above"},
		{"1-2,3-4,5-6,7-8,9-10,11-12,13-14,15", []PortRange{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}, {11, 12}, {13, 14}, {15, 15}}, ""},
		{"1-2,3-4,5-6,7-8,9-10,11-12,13-14,15-16", nil, "16 pieces"},
		{"a-b", nil, "not a port"},
	}
	for _, tc := range tests {
		got, reason := ParsePorts(tc.in)
		if tc.bad != "" {
			if !strings.Contains(reason, tc.bad) {
				t.Errorf("ParsePorts(%q) reason %q, want one saying %q", tc.in, reason, tc.bad)
			}
			continue
		}
		if reason != "" || len(got) != len(tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %q", tc.in, got, reason)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParsePorts(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

func TestValidateFirewall(t *testing.T) {
	for _, tc := range []struct {
		label string
		ok    bool
	}{
		{"web-fw", true}, {"a.b_c-d", true}, {"fw1", true}, {"1fw", true},
		{"ab", false}, {strings.Repeat("a", 33), false}, {"-fw", false}, {"fw-", false},
		{"f--w", false}, {"f__w", false}, {"f..w", false}, {"f w", false}, {"fw!", false},
	} {
		fw := Firewall{Label: tc.label, Status: FirewallEnabled}
		es := ValidateFirewall(&fw)
		if (len(es) == 0) != tc.ok {
			t.Errorf("label %q: %v", tc.label, es)
		}
	}
	fw := Firewall{Label: "good", Status: "deleted", Tags: []string{"x"}}
	if got := fields(ValidateFirewall(&fw)); len(got) != 2 || got[0] != "status" || got[1] != "tags[0]" {
		t.Errorf("fields %v, want status and tags[0]", got)
	}
}

func TestValidateFirewallRules(t *testing.T) {
	good := FirewallRule{Action: "ACCEPT", Protocol: "TCP", Ports: "80", Addresses: FirewallAddresses{IPv4: []string{"192.0.2.0/24"}}}
	tests := []struct {
		name   string
		mutate func(*FirewallRules)
		fields []string
	}{
		{"valid", func(*FirewallRules) {}, nil},
		{"no policies", func(r *FirewallRules) { r.InboundPolicy, r.OutboundPolicy = "", "" }, []string{"inbound_policy", "outbound_policy"}},
		{"bad policy", func(r *FirewallRules) { r.InboundPolicy = "REJECT" }, []string{"inbound_policy"}},
		{"no action", func(r *FirewallRules) { r.Inbound[0].Action = "" }, []string{"inbound[0].action"}},
		{"bad protocol", func(r *FirewallRules) { r.Inbound[0].Protocol = "SCTP" }, []string{"inbound[0].protocol"}},
		{"ports with ICMP", func(r *FirewallRules) { r.Inbound[0].Protocol = "ICMP" }, []string{"inbound[0].ports"}},
		{"bad ports", func(r *FirewallRules) { r.Inbound[0].Ports = "80-" }, []string{"inbound[0].ports"}},
		{"no addresses", func(r *FirewallRules) { r.Inbound[0].Addresses = FirewallAddresses{} }, []string{"inbound[0].addresses"}},
		{"empty ipv6", func(r *FirewallRules) { r.Inbound[0].Addresses.IPv6 = []string{} }, []string{"inbound[0].addresses.ipv6"}},
		{"v6 in ipv4", func(r *FirewallRules) { r.Inbound[0].Addresses.IPv4 = []string{"fd00::/8"} }, []string{"inbound[0].addresses.ipv4[0]"}},
		{"v4 in ipv6", func(r *FirewallRules) { r.Inbound[0].Addresses.IPv6 = []string{"192.0.2.0/24"} }, []string{"inbound[0].addresses.ipv6[0]"}},
		{"no mask", func(r *FirewallRules) { r.Inbound[0].Addresses.IPv4 = []string{"192.0.2.1"} }, []string{"inbound[0].addresses.ipv4[0]"}},
		{"zone", func(r *FirewallRules) { r.Inbound[0].Addresses.IPv6 = []string{"fe80::1%eth0/64"} }, []string{"inbound[0].addresses.ipv6[0]"}},
		{"too many addresses", func(r *FirewallRules) {
			r.Inbound[0].Addresses.IPv4 = make([]string, 256)
			for i := range r.Inbound[0].Addresses.IPv4 {
				r.Inbound[0].Addresses.IPv4[i] = "192.0.2.0/24"
			}
		}, []string{"inbound[0].addresses"}},
		{"short label", func(r *FirewallRules) { r.Inbound[0].Label = "ab" }, []string{"inbound[0].label"}},
		{"long description", func(r *FirewallRules) { r.Outbound[0].Description = strings.Repeat("d", 101) }, []string{"outbound[0].description"}},
		{"too many rules", func(r *FirewallRules) {
			for len(r.Inbound)+len(r.Outbound) < 26 {
				r.Inbound = append(r.Inbound, good)
			}
		}, []string{"inbound"}},
	}
	for _, tc := range tests {
		r := FirewallRules{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
			Inbound: []FirewallRule{good}, Outbound: []FirewallRule{good}}
		r.Inbound[0].Addresses.IPv4 = []string{"192.0.2.0/24"}
		tc.mutate(&r)
		if es := ValidateFirewallRules(&r); !sameFields(es, tc.fields) {
			t.Errorf("%s: %v, want fields %v", tc.name, es, tc.fields)
		}
	}
}

func TestValidateDeviceType(t *testing.T) {
	if es := ValidateDeviceType("nodebalancer"); len(es) != 0 {
		t.Fatal(es)
	}
	for _, bad := range []string{"", "linode", "linode_interface", "vpc"} {
		es := ValidateDeviceType(bad)
		if len(es) != 1 || es[0].Field != "type" {
			t.Errorf("type %q: %v", bad, es)
		}
	}
}

// FuzzParsePorts: ParsePorts never panics, and what it accepts obeys Linode's rules.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"80", "22-24, 80, 443", "080", "1-2,3-4", "65535", "", ", ", "1-", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ranges, reason := ParsePorts(s)
		if reason != "" {
			if ranges != nil {
				t.Fatalf("%q: ranges %v with reason %q", s, ranges, reason)
			}
			return
		}
		pieces := 0
		for _, r := range ranges {
			if r.First == 0 || r.Last < r.First {
				t.Fatalf("%q: bad range %v", s, r)
			}
			pieces++
			if r.Last != r.First {
				pieces++
			}
		}
		if pieces == 0 || pieces > MaxRulePortPieces {
			t.Fatalf("%q: %d pieces accepted", s, pieces)
		}
	})
}
