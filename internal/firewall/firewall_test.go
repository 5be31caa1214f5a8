package firewall

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

func v4(s ...string) model.FirewallAddresses { return model.FirewallAddresses{IPv4: s} }

func both(a4, a6 []string) model.FirewallAddresses {
	return model.FirewallAddresses{IPv4: a4, IPv6: a6}
}

func mustCompile(t testing.TB, r model.FirewallRules) *Table {
	t.Helper()
	if es := model.ValidateFirewallRules(&r); len(es) > 0 {
		t.Fatalf("rules do not validate: %v", es)
	}
	tb, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestDecideFirstMatchingRuleWins(t *testing.T) {
	tb := mustCompile(t, model.FirewallRules{
		InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT",
		Inbound: []model.FirewallRule{
			{Label: "allow-one", Action: "ACCEPT", Protocol: "TCP", Addresses: v4("127.9.0.5/32")},
			{Label: "drop-net", Action: "DROP", Protocol: "TCP", Addresses: both([]string{"127.9.0.0/16"}, []string{"fd00:9::/48"})},
			{Label: "drop-web", Action: "DROP", Protocol: "TCP", Ports: "80, 8000-8100", Addresses: v4("0.0.0.0/0")},
			{Label: "udp-only", Action: "DROP", Protocol: "UDP", Addresses: v4("127.10.0.0/16")},
			{Label: "icmp", Action: "DROP", Protocol: "ICMP", Addresses: v4("127.11.0.0/16")},
			{Action: "ACCEPT", Protocol: "TCP", Ports: "81", Addresses: v4("127.12.0.1/32")},
			{Label: "v6-host", Action: "DROP", Protocol: "TCP", Addresses: both(nil, []string{"fd00:7::1/128"})},
		},
	})
	tests := []struct {
		addr   string
		proto  Proto
		port   uint16
		accept bool
		rule   string
	}{
		{"127.9.0.5", TCP, 443, true, "allow-one"},       // earlier ACCEPT beats the later, wider DROP
		{"127.9.0.6", TCP, 443, false, "drop-net"},       // the network
		{"127.9.255.255", TCP, 80, false, "drop-net"},    // the network, before the port rule
		{"127.8.0.1", TCP, 80, false, "drop-web"},        // a port of the list
		{"127.8.0.1", TCP, 8050, false, "drop-web"},      // inside the range
		{"127.8.0.1", TCP, 8101, true, "inbound_policy"}, // past the range
		{"127.8.0.1", TCP, 443, true, "inbound_policy"},
		{"127.10.0.1", TCP, 443, true, "inbound_policy"}, // a UDP rule does not match tcp
		{"127.10.0.1", UDP, 443, false, "udp-only"},
		{"127.11.0.1", TCP, 443, true, "inbound_policy"}, // ICMP never matches a connection
		{"127.12.0.1", TCP, 81, true, "inbound[5]"},      // a rule without a label
		{"127.12.0.1", TCP, 80, false, "drop-web"},       // an earlier rule takes port 80
		{"fd00:9::1", TCP, 80, false, "drop-net"},
		{"fd00:9:0:1::1", TCP, 443, false, "drop-net"},
		{"fd00:8::1", TCP, 80, true, "inbound_policy"}, // drop-web names only ipv4
		{"fd00:7::1", TCP, 443, false, "v6-host"},
		{"fd00:7::2", TCP, 443, true, "inbound_policy"},
		{"::ffff:127.9.0.6", TCP, 443, false, "drop-net"}, // a mapped address is its IPv4 one
	}
	for _, tc := range tests {
		accept, i := tb.Decide(netip.MustParseAddr(tc.addr), tc.proto, tc.port)
		if accept != tc.accept || tb.RuleName(i) != tc.rule {
			t.Errorf("%s proto %d port %d: accept %v by %q, want %v by %q", tc.addr, tc.proto, tc.port, accept, tb.RuleName(i), tc.accept, tc.rule)
		}
	}
}

func TestDecidePolicy(t *testing.T) {
	for _, pol := range []model.RuleAction{"ACCEPT", "DROP"} {
		tb := mustCompile(t, model.FirewallRules{InboundPolicy: pol, OutboundPolicy: "ACCEPT"})
		accept, i := tb.Decide(netip.MustParseAddr("127.0.0.1"), TCP, 80)
		if accept != (pol == "ACCEPT") || i != PolicyRule || tb.RuleName(i) != "inbound_policy" {
			t.Errorf("policy %s with no rules: accept %v by %d", pol, accept, i)
		}
		accept, _ = tb.Decide(netip.MustParseAddr("fd00::1"), UDP, 53)
		if accept != (pol == "ACCEPT") {
			t.Errorf("policy %s, v6 udp: accept %v", pol, accept)
		}
	}
}

func TestOutboundRulesDoNotFilterClients(t *testing.T) {
	tb := mustCompile(t, model.FirewallRules{InboundPolicy: "ACCEPT", OutboundPolicy: "DROP",
		Outbound: []model.FirewallRule{{Action: "DROP", Protocol: "TCP", Addresses: v4("0.0.0.0/0")}}})
	if ok, _ := tb.Decide(netip.MustParseAddr("127.0.0.1"), TCP, 80); !ok {
		t.Fatal("an outbound rule dropped an inbound client")
	}
}

func TestHostBitsAreMasked(t *testing.T) {
	tb := mustCompile(t, model.FirewallRules{InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT",
		Inbound: []model.FirewallRule{{Action: "DROP", Protocol: "TCP", Addresses: v4("127.20.0.167/24")}}})
	if ok, _ := tb.Decide(netip.MustParseAddr("127.20.0.1"), TCP, 80); ok {
		t.Fatal("127.20.0.1 is in 127.20.0.167/24's network and must be dropped")
	}
}

func TestGuard(t *testing.T) {
	drops := NewDrops()
	g := NewGuard(7, drops)
	client := netip.MustParseAddr("127.30.0.1")
	if ok, _ := g.Allow(client, TCP, 80); !ok {
		t.Fatal("an unarmed guard dropped a client")
	}
	var nilGuard *Guard
	if ok, _ := nilGuard.Allow(client, TCP, 80); !ok {
		t.Fatal("a nil guard dropped a client")
	}
	tb := mustCompile(t, model.FirewallRules{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
		Inbound: []model.FirewallRule{{Label: "deny-30", Action: "DROP", Protocol: "TCP", Addresses: v4("127.30.0.0/16")},
			{Label: "let-31", Action: "ACCEPT", Protocol: "TCP", Addresses: v4("127.31.0.0/16")}}})
	g.Arm(tb)
	for range 3 {
		if ok, rule := g.Allow(client, TCP, 80); ok || rule != "deny-30" {
			t.Fatalf("Allow = %v %q, want a drop by deny-30", ok, rule)
		}
	}
	if ok, rule := g.Allow(netip.MustParseAddr("127.32.0.1"), TCP, 80); ok || rule != "inbound_policy" {
		t.Fatalf("Allow = %v %q, want a drop by the policy", ok, rule)
	}
	if ok, _ := g.Allow(netip.MustParseAddr("127.31.0.1"), TCP, 80); !ok {
		t.Fatal("let-31 must accept")
	}
	got := map[string]uint64{}
	drops.Each(func(nb int, rule string, n uint64) {
		if nb != 7 {
			t.Errorf("counter of NodeBalancer %d", nb)
		}
		got[rule] = n
	})
	if got["deny-30"] != 3 || got["inbound_policy"] != 1 || got["let-31"] != 0 {
		t.Fatalf("drops %v", got)
	}
	// Re-arming with new rules keeps the counts of rules that keep their name.
	g.Arm(mustCompile(t, model.FirewallRules{InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT",
		Inbound: []model.FirewallRule{{Label: "deny-30", Action: "DROP", Protocol: "TCP", Addresses: v4("127.30.0.1/32")}}}))
	g.Allow(client, TCP, 80)
	drops.Each(func(_ int, rule string, n uint64) { got[rule] = n })
	if got["deny-30"] != 4 {
		t.Fatalf("deny-30 count %d after re-arming, want 4", got["deny-30"])
	}
	g.Arm(nil)
	if ok, _ := g.Allow(client, TCP, 80); !ok {
		t.Fatal("a disarmed guard dropped a client")
	}
	drops.Retain(map[int]bool{})
	n := 0
	drops.Each(func(int, string, uint64) { n++ })
	if n != 0 {
		t.Fatalf("%d counters after Retain of nothing", n)
	}
}

// bigRules is a firewall at Linode's limits: 25 inbound rules of 10 networks each.
func bigRules() model.FirewallRules {
	r := model.FirewallRules{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT"}
	for i := range 25 {
		var a4, a6 []string
		for j := range 5 {
			a4 = append(a4, fmt.Sprintf("10.%d.%d.0/24", i, j))
			a6 = append(a6, fmt.Sprintf("fd00:%x:%x::/48", i, j))
		}
		r.Inbound = append(r.Inbound, model.FirewallRule{Action: "DROP", Protocol: "TCP", Ports: "22, 8000-8100",
			Addresses: both(a4, a6)})
	}
	r.Inbound[24].Action = "ACCEPT"
	r.Inbound[24].Ports = ""
	r.Inbound[24].Addresses = v4("127.0.0.0/8")
	return r
}

func BenchmarkGuardAllow(b *testing.B) {
	g := NewGuard(1, NewDrops())
	client := netip.MustParseAddr("127.0.0.9")
	b.Run("unarmed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			g.Allow(client, TCP, 80)
		}
	})
	g.Arm(mustCompile(b, bigRules()))
	b.Run("25rules/accept", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, _ := g.Allow(client, TCP, 80); !ok {
				b.Fatal("dropped")
			}
		}
	})
	other := netip.MustParseAddr("10.24.4.1")
	b.Run("25rules/drop", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			g.Allow(other, TCP, 80)
		}
	})
	v6 := netip.MustParseAddr("fd00:3:2::1")
	b.Run("25rules/v6", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			g.Allow(v6, TCP, 8050)
		}
	})
}

func FuzzDecide(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(80))
	f.Add([]byte{0xfd, 0, 0, 3, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(8050))
	tb := mustCompile(f, bigRules())
	f.Fuzz(func(t *testing.T, ip []byte, port uint16) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		got, i := tb.Decide(a, TCP, port)
		// The reference: rules in order, the first match decides.
		want, wi := tb.accept, PolicyRule
		r := bigRules()
		for j, in := range r.Inbound {
			if in.Protocol != "TCP" {
				continue
			}
			ports, _ := model.ParsePorts(in.Ports)
			if in.Ports != "" && !portIn(ports, port) {
				continue
			}
			match := false
			for _, s := range append(append([]string{}, in.Addresses.IPv4...), in.Addresses.IPv6...) {
				p := netip.MustParsePrefix(s)
				match = match || p.Contains(a.Unmap())
			}
			if match {
				want, wi = in.Action == "ACCEPT", j
				break
			}
		}
		if got != want || i != wi {
			t.Fatalf("%s:%d: got %v by %d, want %v by %d", a, port, got, i, want, wi)
		}
	})
}
