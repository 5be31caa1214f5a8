package ha

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The failover itself is tested for real, with three hosts in network namespaces, in
// internal/multihost (TestFrontendFailover); these are the parts that need no root.

func TestNewRefusesATimingThatCannotBeSafe(t *testing.T) {
	_, err := New(Options{Interface: "lo", TTL: time.Second, Renew: 300 * time.Millisecond, Margin: 800 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "must be longer than renew") {
		t.Fatalf("TTL 1s, renew 300ms, margin 800ms: %v", err)
	}
}

func TestNewNamesAMissingInterface(t *testing.T) {
	_, err := New(Options{Interface: "nb-no-such0"})
	if err == nil || !strings.Contains(err.Error(), "--frontend-interface nb-no-such0") {
		t.Fatalf("missing interface: %v", err)
	}
	if _, err := RemoveStale("nb-no-such0", nil, nil); err == nil || !strings.Contains(err.Error(), "nb-no-such0") {
		t.Fatalf("RemoveStale on a missing interface: %v", err)
	}
}

func TestAddressesAreHostAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr string
		bits int
		v6   bool
	}{{"198.18.8.193", 32, false}, {"fd00::193", 128, true}} {
		a := addrOf(netip.MustParseAddr(tc.addr))
		ones, bits := a.Mask.Size()
		if ones != tc.bits || bits != tc.bits || !isHostMask(a.Mask) {
			t.Errorf("%s: mask /%d of %d", tc.addr, ones, bits)
		}
		if tc.v6 != (a.Flags != 0) {
			t.Errorf("%s: flags %#x (IPv6 ones skip duplicate address detection)", tc.addr, a.Flags)
		}
	}
	if isHostMask(net.CIDRMask(24, 32)) {
		t.Error("a /24 is not a host address: RemoveStale must leave the interface's own subnet alone")
	}
	pool := []netip.Prefix{netip.MustParsePrefix("198.18.8.192/28")}
	if !inPool(pool, netip.MustParseAddr("198.18.8.193")) || inPool(pool, netip.MustParseAddr("198.18.8.2")) {
		t.Error("inPool")
	}
}
