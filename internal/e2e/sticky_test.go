package e2e

import (
	"testing"
	"time"

	"github.com/linode/linodego"
)

// TestStickyCookieRebalanced: a client whose NB_SRVID cookie names a node that is DOWN
// or rejected is balanced to another node and given that node's cookie, and keeps to
// the new node afterwards.
func TestStickyCookieRebalanced(t *testing.T) {
	e := newEnv(t)
	a := e.httpBackend("a", 1)
	l := e.balancer(checked(linodego.ProtocolHTTP, linodego.StickinessHTTPCookie),
		nodeSpec{name: "a", addr: a.addr},
		nodeSpec{name: "b", addr: e.httpBackend("b", 2).addr},
		nodeSpec{name: "c", addr: e.httpBackend("c", 3).addr})
	for _, n := range []string{"a", "b", "c"} {
		l.waitStatus(n, "UP", upWithin)
	}
	c := e.httpClient(0, true)
	cookies := cookiesOf(t, c, l, "a", "b", "c")
	if cookies["a"] == cookies["b"] || cookies["b"] == cookies["c"] || cookies["a"] == cookies["c"] {
		t.Fatalf("cookies do not tell nodes apart: %v", cookies)
	}
	for node, ck := range cookies {
		if got := count(t, c, l.url("/"), ck, 10); got[node] != 10 {
			t.Fatalf("cookie of %s: %v", node, got)
		}
	}

	// moved checks that a client holding from's cookie lands elsewhere, is given the
	// new node's cookie, and stays there with it; it returns the new node.
	moved := func(stage, from string) string {
		t.Helper()
		r := mustGet(t, c, l.url("/"), cookies[from])
		if r.node == from {
			t.Fatalf("%s: the client of %s still reached it", stage, from)
		}
		if r.setCookie != cookies[r.node] {
			t.Fatalf("%s: re-balanced to %s with cookie %q, want %q", stage, r.node, r.setCookie, cookies[r.node])
		}
		if got := count(t, c, l.url("/"), r.setCookie, 10); got[r.node] != 10 {
			t.Fatalf("%s: with the rewritten cookie: %v, want all on %s", stage, got, r.node)
		}
		return r.node
	}

	a.sick.Store(true)
	l.waitStatus("a", "DOWN", 2*time.Second+time.Second+downSlack)
	moved("a DOWN", "a")
	a.sick.Store(false)
	l.waitStatus("a", "UP", upWithin)
	if got := count(t, c, l.url("/"), cookies["a"], 10); got["a"] != 10 {
		t.Fatalf("a's cookie once a is UP again: %v", got)
	}

	l.setMode("b", linodego.ModeReject)
	applied()
	moved("b rejected", "b")
}

// TestStickyTableRebalanced: with table stickiness, client addresses pinned to a node
// that goes DOWN or is rejected move to another node and are pinned there: they stay
// on it, even once the old node is back.
func TestStickyTableRebalanced(t *testing.T) {
	for _, proto := range []linodego.ConfigProtocol{linodego.ProtocolHTTP, linodego.ProtocolTCP} {
		t.Run(string(proto), func(t *testing.T) {
			e := newEnv(t)
			var a interface{ setSick(bool) }
			var nodes []nodeSpec
			if proto == linodego.ProtocolHTTP {
				ha := e.httpBackend("a", 1)
				a, nodes = (*sickHTTP)(ha), []nodeSpec{{name: "a", addr: ha.addr}}
			} else {
				ta := e.tcpBackend("a", 1)
				a, nodes = (*sickTCP)(ta), []nodeSpec{{name: "a", addr: ta.addr}}
			}
			nodes = append(nodes, nodeSpec{name: "b", addr: e.backend(proto, "b", 2)})
			nodes = append(nodes, nodeSpec{name: "c", addr: e.backend(proto, "c", 3)})
			l := e.balancer(checked(proto, linodego.StickinessTable), nodes...)
			for _, n := range []string{"a", "b", "c"} {
				l.waitStatus(n, "UP", upWithin)
			}
			one := func(src byte) string {
				t.Helper()
				if proto == linodego.ProtocolHTTP {
					return mustGet(t, e.httpClient(src, false), l.url("/"), "").node
				}
				node, err := e.tcpNode(l.front, src)
				if err != nil {
					t.Fatal(err)
				}
				return node
			}
			pinned := map[byte]string{}
			for src := byte(1); src <= 12; src++ {
				pinned[src] = one(src)
			}
			// repinned checks that the addresses pinned to from now reach another node,
			// the same one every time, and records it.
			repinned := func(stage, from string) {
				t.Helper()
				n := 0
				for src, node := range pinned {
					if node != from {
						continue
					}
					n++
					to := one(src)
					if to == from {
						t.Fatalf("%s: address %d still reached %s", stage, src, from)
					}
					for range 5 {
						if got := one(src); got != to {
							t.Fatalf("%s: address %d moved to %s, then reached %s", stage, src, to, got)
						}
					}
					pinned[src] = to
				}
				if n == 0 {
					t.Fatalf("%s: no address was pinned to %s (%v)", stage, from, pinned)
				}
			}
			// stayed checks that every address still reaches the node it is pinned to.
			stayed := func(stage string) {
				t.Helper()
				for src, node := range pinned {
					if got := one(src); got != node {
						t.Fatalf("%s: address %d pinned to %s reached %s", stage, src, node, got)
					}
				}
			}

			a.setSick(true)
			l.waitStatus("a", "DOWN", 2*time.Second+time.Second+downSlack)
			repinned("a DOWN", "a")
			stayed("a DOWN")
			a.setSick(false)
			l.waitStatus("a", "UP", upWithin)
			stayed("a UP again")

			l.setMode("b", linodego.ModeReject)
			applied()
			repinned("b rejected", "b")
			l.setMode("b", linodego.ModeAccept)
			applied()
			stayed("b accepting again")
		})
	}
}

// sickHTTP and sickTCP let a test make either kind of backend fail its /health.
type (
	sickHTTP httpBackend
	sickTCP  tcpBackend
)

func (b *sickHTTP) setSick(v bool) { b.sick.Store(v) }
func (b *sickTCP) setSick(v bool)  { b.sick.Store(v) }

// TestTableStickyStable: a client address with table stickiness reaches the same node
// on each of 100 new connections, while different addresses spread over the nodes.
func TestTableStickyStable(t *testing.T) {
	for _, proto := range []linodego.ConfigProtocol{linodego.ProtocolHTTP, linodego.ProtocolTCP} {
		t.Run(string(proto), func(t *testing.T) {
			e := newEnv(t)
			l := e.balancer(unchecked(proto, linodego.StickinessTable),
				nodeSpec{name: "a", addr: e.backend(proto, "a", 1)},
				nodeSpec{name: "b", addr: e.backend(proto, "b", 2)},
				nodeSpec{name: "c", addr: e.backend(proto, "c", 3)})
			used := map[string]bool{}
			for src := byte(1); src <= 3; src++ {
				var got map[string]int
				if proto == linodego.ProtocolHTTP {
					got = count(t, e.httpClient(src, false), l.url("/"), "", 100)
				} else {
					got = e.mustTCPCount(l.front, src, 100)
				}
				if len(got) != 1 {
					t.Fatalf("address %d spread over %v, want one node for all 100 connections", src, got)
				}
				for n := range got {
					used[n] = true
				}
			}
			if len(used) < 2 {
				t.Fatalf("3 addresses all pinned to %v: balancing of new addresses broken?", used)
			}
		})
	}
}
