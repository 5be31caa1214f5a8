package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// checked is a config with fast active http checks on /health (interval 2 s,
// timeout 1 s, one failure takes a node DOWN) and passive checks on.
func checked(proto linodego.ConfigProtocol, stick linodego.ConfigStickiness) linodego.NodeBalancerConfigCreateOptions {
	return linodego.NodeBalancerConfigCreateOptions{
		Protocol: proto, Algorithm: linodego.AlgorithmRoundRobin, Stickiness: stick,
		Check: linodego.CheckHTTP, CheckPath: "/health", CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 1,
		CheckPassive: ptr(true),
	}
}

// unchecked is a config without active checks.
func unchecked(proto linodego.ConfigProtocol, stick linodego.ConfigStickiness) linodego.NodeBalancerConfigCreateOptions {
	return linodego.NodeBalancerConfigCreateOptions{
		Protocol: proto, Algorithm: linodego.AlgorithmRoundRobin, Stickiness: stick,
		Check: linodego.CheckNone, CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 1, CheckPassive: ptr(true),
	}
}

// upWithin bounds how long a fresh or recovering node takes to show UP: its first
// check runs within 500 ms, a recovering node's next check within one interval.
const upWithin = 4 * time.Second

// TestAcceptSpreadsByWeight: accept nodes share new connections in proportion to
// their weights, for http requests and for tcp sessions.
func TestAcceptSpreadsByWeight(t *testing.T) {
	for _, proto := range []linodego.ConfigProtocol{linodego.ProtocolHTTP, linodego.ProtocolTCP} {
		t.Run(string(proto), func(t *testing.T) {
			e := newEnv(t)
			a := nodeSpec{name: "light", addr: e.backend(proto, "light", 1), weight: 1}
			b := nodeSpec{name: "heavy", addr: e.backend(proto, "heavy", 2), weight: 3}
			l := e.balancer(unchecked(proto, linodego.StickinessNone), a, b)
			const total = 400
			var got map[string]int
			if proto == linodego.ProtocolHTTP {
				got = count(t, e.httpClient(0, false), l.url("/"), "", total)
			} else {
				got = e.mustTCPCount(l.front, 0, total)
			}
			if got["light"]+got["heavy"] != total {
				t.Fatalf("answers %v, want %d from light and heavy", got, total)
			}
			// Weights 1:3 give heavy 75%; allow ±5 points.
			if pct := got["heavy"] * 100 / total; pct < 70 || pct > 80 {
				t.Fatalf("heavy (weight 3) got %d%% of %d (%v), want 75±5", pct, total, got)
			}
			t.Logf("%s: %v", proto, got)
		})
	}
}

// TestRejectKeepsOpenSessions: setting a node to reject leaves its open tcp sessions
// working, sends every new connection elsewhere, stops its health checks and shows it
// DOWN.
func TestRejectKeepsOpenSessions(t *testing.T) {
	e := newEnv(t)
	a, b, r := e.tcpBackend("a", 1), e.tcpBackend("b", 2), e.tcpBackend("r", 3)
	l := e.balancer(checked(linodego.ProtocolTCP, linodego.StickinessNone),
		nodeSpec{name: "a", addr: a.addr}, nodeSpec{name: "b", addr: b.addr},
		nodeSpec{name: "r", addr: r.addr, mode: linodego.ModeReject}) // rejecting from the start
	l.waitStatus("a", "UP", upWithin)
	l.waitStatus("b", "UP", upWithin)
	if st := l.status("r"); st != "DOWN" {
		t.Fatalf("a node created in reject mode shows %q, want DOWN", st)
	}

	// An open session on a.
	var kept *tcpSession
	for i := 0; kept == nil && i < 10; i++ {
		s, err := e.dialTCP(l.front, 0)
		if err != nil {
			t.Fatal(err)
		}
		if s.node == "a" {
			kept = s
		} else {
			s.Close()
		}
	}
	if kept == nil {
		t.Fatal("no session reached a in 10 tries")
	}
	defer kept.Close()
	if err := kept.echo("before"); err != nil {
		t.Fatal(err)
	}

	l.setMode("a", linodego.ModeReject)
	checksAtReject := a.healthHits.Load()
	// The open session carries bytes while the change propagates and after.
	for i := range 10 {
		if err := kept.echo(fmt.Sprintf("propagating %d", i)); err != nil {
			t.Fatalf("open session on the rejected node broke: %v", err)
		}
		time.Sleep(modeChangeBound / 10)
	}
	if st := l.status("a"); st != "DOWN" {
		t.Fatalf("a reject node shows %q, want DOWN", st)
	}
	if up, down := l.nodesStatus(); up != 1 || down != 2 {
		t.Fatalf("nodes_status up %d down %d, want 1 and 2", up, down)
	}
	// Over more than two check intervals: the session keeps passing bytes, new
	// sessions all go to b, and a sees no health checks.
	deadline := time.Now().Add(5 * time.Second)
	sessions := 0
	for i := 0; time.Now().Before(deadline); i++ {
		if err := kept.echo(fmt.Sprintf("line %d", i)); err != nil {
			t.Fatalf("open session on the rejected node broke after %d lines: %v", i, err)
		}
		node, err := e.tcpNode(l.front, 0)
		if err != nil {
			t.Fatal(err)
		}
		if node != "b" {
			t.Fatalf("new session %d went to %q after a was rejected", i, node)
		}
		sessions++
		time.Sleep(50 * time.Millisecond)
	}
	// One check may have been in flight when the mode changed.
	if n := a.healthHits.Load() - checksAtReject; n > 1 {
		t.Fatalf("the rejected node got %d health checks", n)
	}
	if b.healthHits.Load() < 2 {
		t.Fatalf("b got %d health checks over 5 s; checks stopped for every node?", b.healthHits.Load())
	}
	if st := l.status("a"); st != "DOWN" {
		t.Fatalf("a reject node shows %q after 5 s, want DOWN", st)
	}
	if n, s := r.healthHits.Load(), r.sessions.Load(); n != 0 || s != 0 {
		t.Fatalf("the node created in reject mode got %d health checks and %d sessions", n, s)
	}
	t.Logf("%d new sessions went to b; a got %d health checks after the change", sessions, a.healthHits.Load()-checksAtReject)

	// Back to accept: checked again and given new sessions.
	l.setMode("a", linodego.ModeAccept)
	l.waitStatus("a", "UP", upWithin)
	if got := e.mustTCPCount(l.front, 0, 10); got["a"] == 0 {
		t.Fatalf("a back in accept got no new sessions: %v", got)
	}
}

// TestRejectKeepsHTTPInFlight: an http response in flight from a node that is set to
// reject (a two-second stream, changed one second in) runs to its end, while new
// requests go elsewhere.
func TestRejectKeepsHTTPInFlight(t *testing.T) {
	e := newEnv(t)
	l := e.balancer(unchecked(linodego.ProtocolHTTP, linodego.StickinessNone),
		nodeSpec{name: "a", addr: e.httpBackend("a", 1).addr},
		nodeSpec{name: "b", addr: e.httpBackend("b", 2).addr})
	c := e.httpClient(0, false)
	var resp *http.Response
	for i := 0; resp == nil; i++ {
		if i == 10 {
			t.Fatal("no slow response from a in 10 tries")
		}
		r, err := c.Get(l.url("/slow"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Header.Get("X-Backend") == "a" {
			resp = r
		} else {
			r.Body.Close()
		}
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "a 0\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	l.setMode("a", linodego.ModeReject)
	applied()
	if got := count(t, c, l.url("/"), "", 10); got["b"] != 10 {
		t.Fatalf("new requests after a was rejected: %v", got)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("the response in flight from the rejected node broke: %v (got %q)", err, rest)
	}
	want := ""
	for i := 1; i < 20; i++ {
		want += fmt.Sprintf("a %d\n", i)
	}
	if string(rest) != want {
		t.Fatalf("rest of the response in flight: %q, want %q", rest, want)
	}
}

// TestDrainCookie: a drained node keeps the clients whose NB_SRVID cookie names it and
// gets no client without one, over http, https with HTTP/1.1 and https with HTTP/2.
func TestDrainCookie(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto linodego.ConfigProtocol
		h2    bool
	}{
		{"http", linodego.ProtocolHTTP, false},
		{"https", linodego.ProtocolHTTPS, false},
		{"https-h2", linodego.ProtocolHTTPS, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			opts := checked(tc.proto, linodego.StickinessHTTPCookie)
			c := e.httpClient(0, true)
			if tc.proto == linodego.ProtocolHTTPS {
				cert := testcert.New(t, tlsName)
				opts.SSLCert, opts.SSLKey = cert.CertPEM, cert.KeyPEM
				c = e.httpsClient(cert.Pool, tc.h2)
			}
			l := e.balancer(opts,
				nodeSpec{name: "a", addr: e.httpBackend("a", 1).addr},
				nodeSpec{name: "b", addr: e.httpBackend("b", 2).addr},
				nodeSpec{name: "c", addr: e.httpBackend("c", 3).addr})
			if r := mustGet(t, c, l.url("/"), ""); (r.proto == 2) != tc.h2 {
				t.Fatalf("client spoke HTTP/%d", r.proto)
			}
			cookies := cookiesOf(t, c, l, "a", "b", "c")

			l.setMode("a", linodego.ModeDrain)
			applied()
			for _, node := range []string{"a", "b"} {
				for i := range 20 {
					r := mustGet(t, c, l.url("/"), cookies[node])
					if r.node != node {
						t.Fatalf("request %d with %s's cookie reached %q after a was drained", i, node, r.node)
					}
					if r.setCookie != "" {
						t.Fatalf("request %d with %s's cookie was given cookie %q", i, node, r.setCookie)
					}
				}
			}
			fresh := map[string]int{}
			for range 60 {
				r := mustGet(t, c, l.url("/"), "")
				fresh[r.node]++
				if r.node == "a" {
					t.Fatalf("a client without a cookie reached the drained node (%v)", fresh)
				}
				if r.setCookie != cookies[r.node] {
					t.Fatalf("new client of %s got cookie %q, want %q", r.node, r.setCookie, cookies[r.node])
				}
			}
			if fresh["b"] == 0 || fresh["c"] == 0 {
				t.Fatalf("new clients did not spread over b and c: %v", fresh)
			}
			if st := l.status("a"); st != "UP" {
				t.Fatalf("a drained node shows %q, want UP (drain keeps health checks)", st)
			}
		})
	}
}

// cookiesOf sends cookie-less requests until each of nodes has answered and returns
// the NB_SRVID value each was given.
func cookiesOf(t *testing.T, c *http.Client, l *lb, nodes ...string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for i := 0; len(got) < len(nodes); i++ {
		if i == 100 {
			t.Fatalf("100 requests gave cookies for %v only, want %v", got, nodes)
		}
		r := mustGet(t, c, l.url("/"), "")
		if slices.Contains(nodes, r.node) {
			if r.setCookie == "" {
				t.Fatalf("%s answered a client without a cookie and set none", r.node)
			}
			got[r.node] = r.setCookie
		}
	}
	return got
}

// TestDrainTable: with table stickiness a drained node keeps the client addresses
// pinned to it before the drain and gets no new address, for http and for tcp.
func TestDrainTable(t *testing.T) {
	for _, proto := range []linodego.ConfigProtocol{linodego.ProtocolHTTP, linodego.ProtocolTCP} {
		t.Run(string(proto), func(t *testing.T) {
			e := newEnv(t)
			var nodes []nodeSpec
			for i, name := range []string{"a", "b"} {
				nodes = append(nodes, nodeSpec{name: name, addr: e.backend(proto, name, byte(i+1))})
			}
			l := e.balancer(checked(proto, linodego.StickinessTable), nodes...)
			l.waitStatus("a", "UP", upWithin)
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
			// Pin 20 addresses, then drain a.
			pinned := map[byte]string{}
			for src := byte(1); src <= 20; src++ {
				pinned[src] = one(src)
			}
			l.setMode("a", linodego.ModeDrain)
			applied()
			onA := 0
			for src, node := range pinned {
				if node == "a" {
					onA++
				}
				for i := range 5 {
					if got := one(src); got != node {
						t.Fatalf("address %d pinned to %s reached %s on request %d after the drain", src, node, got, i)
					}
				}
			}
			if onA == 0 || onA == len(pinned) {
				t.Fatalf("pins %v: want some on a and some on b", pinned)
			}
			for src := byte(101); src <= 130; src++ {
				if got := one(src); got != "b" {
					t.Fatalf("new address %d reached %s after a was drained", src, got)
				}
			}
			if st := l.status("a"); st != "UP" {
				t.Fatalf("a drained node shows %q, want UP", st)
			}
		})
	}
}

// TestBackup: a backup node takes no traffic while an accept node is UP, all of it
// once every accept node is DOWN, rejected or drained, and none again as soon as an
// accept node is UP; a client stuck to the backup goes back to the accept node.
func TestBackup(t *testing.T) {
	e := newEnv(t)
	a, b, k := e.httpBackend("a", 1), e.httpBackend("b", 2), e.httpBackend("k", 3)
	l := e.balancer(checked(linodego.ProtocolHTTP, linodego.StickinessHTTPCookie),
		nodeSpec{name: "a", addr: a.addr}, nodeSpec{name: "b", addr: b.addr},
		nodeSpec{name: "k", addr: k.addr, mode: linodego.ModeBackup})
	for _, n := range []string{"a", "b", "k"} {
		l.waitStatus(n, "UP", upWithin)
	}
	c := e.httpClient(0, true)
	expect := func(stage string, want ...string) map[string]int {
		t.Helper()
		got := count(t, c, l.url("/"), "", 40)
		if n := got["a"] + got["b"] + got["k"]; n != 40 {
			t.Fatalf("%s: answers %v", stage, got)
		}
		for node, n := range got {
			ok := false
			for _, w := range want {
				ok = ok || w == node
			}
			if !ok {
				t.Fatalf("%s: %s answered %d of 40 (%v), want only %v", stage, node, n, got, want)
			}
		}
		return got
	}
	expect("all UP", "a", "b")

	a.sick.Store(true)
	b.sick.Store(true)
	l.waitStatus("a", "DOWN", 5*time.Second)
	l.waitStatus("b", "DOWN", 5*time.Second)
	r := mustGet(t, c, l.url("/"), "")
	if r.node != "k" || r.setCookie == "" {
		t.Fatalf("every accept node DOWN: %+v, want k with a cookie", r)
	}
	kCookie := r.setCookie
	expect("accept nodes DOWN", "k")
	if got := count(t, c, l.url("/"), kCookie, 10); got["k"] != 10 {
		t.Fatalf("client stuck to the backup in use: %v", got)
	}

	a.sick.Store(false)
	l.waitStatus("a", "UP", upWithin)
	settle(t, c, l.url("/"), "", "a")
	expect("a UP again", "a")
	r = mustGet(t, c, l.url("/"), kCookie)
	if r.node != "a" || r.setCookie == "" || r.setCookie == kCookie {
		t.Fatalf("client stuck to the backup once a is UP: %+v, want a with a new cookie", r)
	}

	for _, mode := range []linodego.NodeMode{linodego.ModeReject, linodego.ModeDrain} {
		l.setMode("a", mode)
		settle(t, c, l.url("/"), "", "k")
		expect("a "+string(mode)+", b DOWN", "k")
	}
	l.setMode("a", linodego.ModeAccept)
	settle(t, c, l.url("/"), "", "a")
	expect("a accept again", "a")
	b.sick.Store(false)
	l.waitStatus("b", "UP", upWithin)
	got := expect("a and b UP", "a", "b")
	if got["a"] == 0 || got["b"] == 0 {
		t.Fatalf("a and b UP: %v", got)
	}
}

// TestZeroEligible: with no node that may take a new connection (none configured, all
// rejected or drained, all DOWN), an http client gets 503 at once and a tcp client's
// connection is closed at once.
func TestZeroEligible(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name  string
		modes []linodego.NodeMode
		down  bool // every node fails its health checks
	}{
		{"no nodes", nil, false},
		{"all reject", []linodego.NodeMode{linodego.ModeReject, linodego.ModeReject}, false},
		{"all drain", []linodego.NodeMode{linodego.ModeDrain, linodego.ModeDrain}, false},
		{"reject and drain", []linodego.NodeMode{linodego.ModeReject, linodego.ModeDrain}, false},
		{"accept and backup DOWN", []linodego.NodeMode{linodego.ModeAccept, linodego.ModeBackup}, true},
	}
	c := e.httpClient(0, false)
	for i, tc := range cases {
		host := byte(10 * (i + 1))
		var hn, tn []nodeSpec
		for j, m := range tc.modes {
			hb, tb := e.httpBackend(fmt.Sprintf("h%d", j), host+byte(j)), e.tcpBackend(fmt.Sprintf("t%d", j), host+5+byte(j))
			hb.sick.Store(tc.down)
			tb.sick.Store(tc.down)
			hn = append(hn, nodeSpec{name: hb.name, addr: hb.addr, mode: m})
			tn = append(tn, nodeSpec{name: tb.name, addr: tb.addr, mode: m})
		}
		cfg := unchecked
		if tc.down {
			cfg = checked
		}
		hl := e.balancer(cfg(linodego.ProtocolHTTP, linodego.StickinessNone), hn...)
		tl := e.balancer(cfg(linodego.ProtocolTCP, linodego.StickinessNone), tn...)
		if tc.down {
			for j := range tc.modes {
				hl.waitStatus(fmt.Sprintf("h%d", j), "DOWN", upWithin)
				tl.waitStatus(fmt.Sprintf("t%d", j), "DOWN", upWithin)
			}
		}
		// The answer comes at once, not after a connect timeout or a retry: the fastest
		// of five tries is under 100ms (one slow try on a loaded machine is not the
		// balancer waiting; a balancer that waits makes every try slow).
		fastest := time.Hour
		for range 5 {
			start := time.Now()
			r, err := get(c, hl.url("/"), "")
			fastest = min(fastest, time.Since(start))
			if err != nil {
				t.Fatalf("%s: http: %v", tc.name, err)
			}
			if r.status != 503 || r.node != "" {
				t.Fatalf("%s: http: status %d from %q, want 503 from the balancer", tc.name, r.status, r.node)
			}
		}
		if fastest > 100*time.Millisecond {
			t.Fatalf("%s: http 503 took %v at the fastest of 5, want < 100ms", tc.name, fastest)
		}
		fastest = time.Hour
		for range 5 {
			start := time.Now()
			conn, err := net.DialTimeout("tcp", tl.front.String(), time.Second)
			if err != nil {
				t.Fatalf("%s: tcp dial: %v", tc.name, err)
			}
			conn.SetDeadline(time.Now().Add(time.Second))
			io.WriteString(conn, "hello\n")
			n, err := conn.Read(make([]byte, 64))
			took := time.Since(start)
			conn.Close()
			if n != 0 || err == nil || !isClosed(err) {
				t.Fatalf("%s: tcp read %d bytes, %v; want the connection closed", tc.name, n, err)
			}
			fastest = min(fastest, took)
		}
		if fastest > 100*time.Millisecond {
			t.Fatalf("%s: tcp close took %v at the fastest of 5, want < 100ms", tc.name, fastest)
		}
	}
}
