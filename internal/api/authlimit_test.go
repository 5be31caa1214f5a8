package api

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/linode/linodego"
)

// clientFrom returns an HTTP client whose connections come from ip (loopback).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func getWith(t *testing.T, c *http.Client, srv *httptest.Server, token string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/v4/nodebalancers", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var env struct {
		Errors []struct{ Reason string } `json:"errors"`
	}
	if r.StatusCode != http.StatusOK {
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil || len(env.Errors) != 1 {
			t.Fatalf("%d without Linode's error envelope: %v", r.StatusCode, err)
		}
		r.Header.Set("X-Reason", env.Errors[0].Reason)
	}
	return r
}

// TestFailedAuthIsThrottledPerAddress: past AuthBurst bad tokens an address gets 429
// with Retry-After in Linode's envelope; a valid token from that address still
// passes; another address is unaffected; the allowance comes back with time.
func TestFailedAuthIsThrottledPerAddress(t *testing.T) {
	e := newEnv(t)
	srv := e.serve()
	a, b := clientFrom("127.0.7.1"), clientFrom("127.0.7.2")
	bad := strings.Repeat("f", 64)
	for i := range AuthBurst {
		if r := getWith(t, a, srv, bad); r.StatusCode != http.StatusUnauthorized || r.Header.Get("X-Reason") != reasonInvalidToken {
			t.Fatalf("bad token %d: %d %q", i+1, r.StatusCode, r.Header.Get("X-Reason"))
		}
	}
	r := getWith(t, a, srv, bad)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "1" ||
		!strings.Contains(r.Header.Get("X-Reason"), "Too many failed authentication attempts") {
		t.Fatalf("bad token past the burst: %d Retry-After %q %q", r.StatusCode, r.Header.Get("Retry-After"), r.Header.Get("X-Reason"))
	}
	if r := getWith(t, a, srv, e.token); r.StatusCode != http.StatusOK {
		t.Errorf("a valid token from the throttled address: %d", r.StatusCode)
	}
	if r := getWith(t, b, srv, bad); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("a bad token from another address: %d", r.StatusCode)
	}
	// The count decays: three refill periods allow three more failures.
	e.clock.Add(3 * AuthRefill)
	for i := range 3 {
		if r := getWith(t, a, srv, bad); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d after the decay: %d", i+1, r.StatusCode)
		}
	}
	if r := getWith(t, a, srv, bad); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the fourth failure after the decay: %d", r.StatusCode)
	}
	// linodego reports it as a 429 (it would retry after Retry-After when allowed to).
	lc := linodego.NewClient(a)
	lc.SetBaseURL(srv.URL)
	lc.SetAPIVersion("v4")
	lc.SetToken(bad)
	lc.SetRetryCount(0)
	if _, err := lc.ListNodeBalancers(context.Background(), nil); status(err) != http.StatusTooManyRequests {
		t.Errorf("linodego: %v", err)
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.7.1:5000":             "127.0.7.1",
		"[::ffff:10.0.0.1]:1":        "10.0.0.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::",
		"[fe80::1%eth0]:22":          "fe80::",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = in
		if got := clientKey(r); got != netip.MustParseAddr(want) {
			t.Errorf("clientKey(%s) = %v, want %s", in, got, want)
		}
	}
}

func TestAuthLimiterTableIsBounded(t *testing.T) {
	var l authLimiter
	now := time.Unix(1e9, 0)
	for i := range maxAuthClients {
		l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if w := l.fail(netip.MustParseAddr("192.0.2.1"), now); w == 0 {
		t.Error("a new address was let in while the table is full of fresh failures")
	}
	// Once the old failures have decayed, they make room.
	later := now.Add(AuthBurst * AuthRefill)
	if w := l.fail(netip.MustParseAddr("192.0.2.1"), later); w != 0 || len(l.clients) != 1 {
		t.Errorf("after the decay: wait %v, %d clients", w, len(l.clients))
	}
}
