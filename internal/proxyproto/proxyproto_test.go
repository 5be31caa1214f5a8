package proxyproto

import (
	"bufio"
	"bytes"
	"net/netip"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct{ src, dst string }{
		{"127.0.0.9:51000", "127.0.1.1:80"},
		{"[::1]:40000", "[fd00::1]:443"},
		{"[::ffff:127.0.0.9]:51000", "127.0.1.1:80"},
	}
	for _, c := range cases {
		src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
		for v, appendFn := range map[int]func([]byte, netip.AddrPort, netip.AddrPort) []byte{1: AppendV1, 2: AppendV2} {
			wire := append(appendFn(nil, src, dst), "payload"...)
			r := bufio.NewReader(bytes.NewReader(wire))
			h, err := Read(r)
			if err != nil {
				t.Fatalf("v%d %s: %v", v, c.src, err)
			}
			wantSrc := netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			if h.Version != v || h.Source != wantSrc || h.Dst != dst || h.Local {
				t.Fatalf("v%d: got %+v want %v -> %v", v, h, wantSrc, dst)
			}
			rest := make([]byte, 16)
			n, _ := r.Read(rest)
			if string(rest[:n]) != "payload" {
				t.Fatalf("v%d consumed payload bytes: %q", v, rest[:n])
			}
		}
	}
}

func TestV1Exact(t *testing.T) {
	got := string(AppendV1(nil, netip.MustParseAddrPort("127.0.0.9:51000"), netip.MustParseAddrPort("127.0.1.1:80")))
	if got != "PROXY TCP4 127.0.0.9 127.0.1.1 51000 80\r\n" {
		t.Fatalf("%q", got)
	}
	mixed := string(AppendV1(nil, netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("127.0.1.1:80")))
	if mixed != "PROXY TCP6 ::1 ::ffff:127.0.1.1 1 80\r\n" {
		t.Fatalf("mixed families: %q", mixed)
	}
}

func TestRejectsGarbage(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n", "PROXY TCP4 1.2.3.4\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
		"PROXY TCP4 ::1 ::1 1 1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 1\n", "\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x0c"} {
		if _, err := Read(bufio.NewReader(bytes.NewReader([]byte(in)))); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(AppendV1(nil, netip.MustParseAddrPort("127.0.0.9:1"), netip.MustParseAddrPort("127.0.1.1:80")))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[::1]:80")))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || h.Local {
			return
		}
		// Whatever parses must write back to a header naming the same endpoints
		// (an IPv4-mapped IPv6 address may come back as plain IPv4).
		var again []byte
		if h.Version == 1 {
			again = AppendV1(nil, h.Source, h.Dst)
		} else {
			again = AppendV2(nil, h.Source, h.Dst)
		}
		h2, err := Read(bufio.NewReader(bytes.NewReader(again)))
		same := func(a, b netip.AddrPort) bool { return a.Addr().Unmap() == b.Addr().Unmap() && a.Port() == b.Port() }
		if err != nil || h2.Version != h.Version || !same(h2.Source, h.Source) || !same(h2.Dst, h.Dst) {
			t.Fatalf("re-encoded %+v as %q: %+v %v", h, again, h2, err)
		}
	})
}
