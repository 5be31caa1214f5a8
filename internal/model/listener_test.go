package model

import (
	"net/netip"
	"testing"
)

func TestListeningReaches(t *testing.T) {
	l := Listening{
		Addrs: []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:8080"), // API on loopback
			netip.MustParseAddrPort("0.0.0.0:9100"),   // /metrics on every address
			netip.MustParseAddrPort("[::]:9200"),      // dual-stack wildcard
			netip.MustParseAddrPort("10.1.2.3:443"),   // a specific local address
		},
		Local: []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::3")},
	}
	for _, c := range []struct {
		node string
		want string // the listener reached, "" for none
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "127.0.0.1:8080"}, // Linux connects 0.0.0.0 to the host
		{"127.0.0.2:8080", ""},             // a specific loopback listener answers on its own ip only
		{"127.0.0.1:8081", ""},
		{"127.9.9.9:9100", "0.0.0.0:9100"}, // wildcard: any loopback address
		{"[::1]:9100", "0.0.0.0:9100"},
		{"10.1.2.3:9100", "0.0.0.0:9100"}, // wildcard: a local address
		{"10.1.2.4:9100", ""},             // another host
		{"[fd00::3]:9200", "[::]:9200"},
		{"192.168.5.5:9200", ""},
		{"10.1.2.3:443", "10.1.2.3:443"},
		{"127.0.0.1:443", ""},
	} {
		x, ok := l.Reaches(netip.MustParseAddrPort(c.node))
		got := ""
		if ok {
			got = x.String()
		}
		if got != c.want {
			t.Errorf("Reaches(%s) = %q, want %q", c.node, got, c.want)
		}
	}
}
