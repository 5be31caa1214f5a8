package e2e

import (
	"testing"
	"time"

	"github.com/linode/linodego"
)

// downSlack is what a DOWN verdict may take beyond check_interval × check_attempts +
// check_timeout: the schedule's jitter (≤ 100 ms at a 2 s interval), wake-ups and the
// API poll.
const downSlack = 500 * time.Millisecond

// TestHealthHTTPDownAndBack: a node whose /health starts answering 500 goes DOWN
// within interval × attempts + timeout, the API shows it DOWN and counts it in
// nodes_status, no client request fails and none reaches it once it is DOWN; when
// /health recovers it comes back UP and gets traffic again.
func TestHealthHTTPDownAndBack(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.httpBackend("a", 1), e.httpBackend("b", 2), e.httpBackend("c", 3)
	opts := checked(linodego.ProtocolHTTP, linodego.StickinessNone)
	opts.CheckAttempts = 2
	l := e.balancer(opts, nodeSpec{name: "a", addr: a.addr}, nodeSpec{name: "b", addr: b.addr}, nodeSpec{name: "c", addr: c.addr})
	for _, n := range []string{"a", "b", "c"} {
		l.waitStatus(n, "UP", upWithin)
	}
	client := e.httpClient(0, true)
	tr := background(httpSender(client, l.url("/")))

	time.Sleep(200 * time.Millisecond)
	a.sick.Store(true)
	tookDown := l.waitStatus("a", "DOWN", 2*2*time.Second+time.Second+downSlack)
	downSeen := time.Now()
	if up, down := l.nodesStatus(); up != 2 || down != 1 {
		t.Fatalf("nodes_status up %d down %d, want 2 and 1", up, down)
	}
	time.Sleep(time.Second)
	ss := tr.finish()
	// Two failures in a row are needed, and checks of a node are ≥ interval − jitter apart.
	if tookDown < 1500*time.Millisecond {
		t.Fatalf("DOWN after %v with check_attempts 2 at a 2 s interval: one failure was enough?", tookDown)
	}
	if f := failures(ss); len(f) > 0 {
		t.Fatalf("%d of %d requests failed while a went DOWN; first: %v", len(f), len(ss), f[0].err)
	}
	if n := reached(ss, "a", downSeen); n > 0 {
		t.Fatalf("%d requests reached a after the API showed it DOWN", n)
	}
	if reached(ss, "a", time.Time{}) == 0 || reached(ss, "b", downSeen) == 0 || reached(ss, "c", downSeen) == 0 {
		t.Fatal("traffic did not spread as expected before and after a went DOWN")
	}
	t.Logf("http check, interval 2 s, attempts 2: DOWN %v after /health turned 500 (bound %v + %v slack); %d requests, none failed",
		tookDown, 5*time.Second, downSlack, len(ss))

	a.sick.Store(false)
	tookUp := l.waitStatus("a", "UP", upWithin)
	settle(t, client, l.url("/"), "", "a")
	if up, down := l.nodesStatus(); up != 3 || down != 0 {
		t.Fatalf("nodes_status up %d down %d after a recovered, want 3 and 0", up, down)
	}
	t.Logf("UP again %v after /health recovered", tookUp)
}

// TestHealthFailureKinds: an http_body check takes a node DOWN when its /health body
// stops matching check_body though the status stays 200, and an http check takes it
// DOWN when /health stops answering within check_timeout; both within interval ×
// attempts + timeout, with no client request failing or reaching the node once it is
// DOWN, and the node comes back UP and into rotation when /health recovers.
func TestHealthFailureKinds(t *testing.T) {
	bad, good := "maintenance", "ok-again"
	for _, tc := range []struct {
		name    string
		check   linodego.ConfigCheck
		fail    func(*httpBackend)
		recover func(*httpBackend)
	}{
		{"http_body mismatch", linodego.CheckHTTPBody,
			func(b *httpBackend) { b.healthBody.Store(&bad) }, func(b *httpBackend) { b.healthBody.Store(&good) }},
		{"http timeout", linodego.CheckHTTP,
			func(b *httpBackend) { b.hang.Store(true) }, func(b *httpBackend) { b.hang.Store(false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a, b := e.httpBackend("a", 1), e.httpBackend("b", 2)
			opts := checked(linodego.ProtocolHTTP, linodego.StickinessNone)
			opts.Check = tc.check
			if tc.check == linodego.CheckHTTPBody {
				opts.CheckBody = "^ok-[a-z]+$"
			}
			l := e.balancer(opts, nodeSpec{name: "a", addr: a.addr}, nodeSpec{name: "b", addr: b.addr})
			l.waitStatus("a", "UP", upWithin)
			l.waitStatus("b", "UP", upWithin)
			client := e.httpClient(0, true)
			tr := background(httpSender(client, l.url("/")))

			time.Sleep(200 * time.Millisecond)
			tc.fail(a)
			took := l.waitStatus("a", "DOWN", 2*time.Second+time.Second+downSlack)
			downSeen := time.Now()
			if up, down := l.nodesStatus(); up != 1 || down != 1 {
				t.Fatalf("nodes_status up %d down %d, want 1 and 1", up, down)
			}
			time.Sleep(500 * time.Millisecond)
			ss := tr.finish()
			if f := failures(ss); len(f) > 0 {
				t.Fatalf("%d of %d requests failed; first: %v", len(f), len(ss), f[0].err)
			}
			if n := reached(ss, "a", downSeen); n > 0 {
				t.Fatalf("%d requests reached a after the API showed it DOWN", n)
			}
			t.Logf("%s: DOWN after %v (bound 3 s + %v slack)", tc.name, took, downSlack)

			tc.recover(a)
			l.waitStatus("a", "UP", upWithin)
			settle(t, client, l.url("/"), "", "a")
		})
	}
}

// TestHealthConnectionDown: a connection check takes a tcp node DOWN once its listener
// is closed, clients never notice (the balancer retries the connect elsewhere, even
// before the node is DOWN), and the node is
// UP and in rotation again once it listens again.
func TestHealthConnectionDown(t *testing.T) {
	e := newEnv(t)
	a, b := e.tcpBackend("a", 1), e.tcpBackend("b", 2)
	opts := checked(linodego.ProtocolTCP, linodego.StickinessNone)
	// Passive checks off: the active connection check alone must find it.
	opts.Check, opts.CheckPath, opts.CheckPassive = linodego.CheckConnection, "", ptr(false)
	l := e.balancer(opts, nodeSpec{name: "a", addr: a.addr}, nodeSpec{name: "b", addr: b.addr})
	l.waitStatus("a", "UP", upWithin)
	l.waitStatus("b", "UP", upWithin)
	tr := background(func() (string, error) { return e.tcpNode(l.front, 0) })

	time.Sleep(200 * time.Millisecond)
	a.stop()
	took := l.waitStatus("a", "DOWN", 2*time.Second+time.Second+downSlack)
	downSeen := time.Now()
	if up, down := l.nodesStatus(); up != 1 || down != 1 {
		t.Fatalf("nodes_status up %d down %d, want 1 and 1", up, down)
	}
	time.Sleep(500 * time.Millisecond)
	ss := tr.finish()
	if f := failures(ss); len(f) > 0 {
		t.Fatalf("%d of %d sessions failed after a's listener closed; first: %v", len(f), len(ss), f[0].err)
	}
	if n := reached(ss, "a", downSeen); n > 0 {
		t.Fatalf("%d sessions reached a after the API showed it DOWN", n)
	}
	t.Logf("connection check: DOWN after %v; %d sessions, none failed (connect retries)", took, len(ss))

	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	l.waitStatus("a", "UP", upWithin)
	// The API reads the checker's verdict; the pick tables follow it through
	// Plane.StatusChanged, a few milliseconds later on a loaded machine.
	waitFor(t, modeChangeBound, "a, listening again, to get sessions", func() bool {
		return e.mustTCPCount(l.front, 0, 10)["a"] > 0
	})
}

// TestUncheckedNodesAreUnknownAndServe: with check none a node is Unknown, as on
// Linode (no check gives a verdict), counts in neither nodes_status.up nor .down, and
// receives traffic as an UP node does; passive checks still take a dead node DOWN.
func TestUncheckedNodesAreUnknownAndServe(t *testing.T) {
	e := newEnv(t)
	a, b := e.tcpBackend("a", 1), e.tcpBackend("b", 2)
	l := e.balancer(unchecked(linodego.ProtocolTCP, linodego.StickinessNone),
		nodeSpec{name: "a", addr: a.addr}, nodeSpec{name: "b", addr: b.addr})
	time.Sleep(time.Second) // longer than a first active check would take to run
	for _, n := range []string{"a", "b"} {
		if st := l.status(n); st != "Unknown" {
			t.Fatalf("node %s under check none shows %q, want Unknown", n, st)
		}
	}
	if up, down := l.nodesStatus(); up != 0 || down != 0 {
		t.Fatalf("nodes_status up %d down %d, want 0 and 0 (Unknown counts in neither)", up, down)
	}
	if got := e.mustTCPCount(l.front, 0, 40); got["a"] == 0 || got["b"] == 0 || got["a"]+got["b"] != 40 {
		t.Fatalf("sessions %v: want both Unknown nodes to serve", got)
	}
	if a.healthHits.Load() != 0 {
		t.Fatalf("check none sent %d checks", a.healthHits.Load())
	}

	a.stop()
	waitFor(t, 5*time.Second, "a to be DOWN by passive checks", func() bool {
		_, _ = e.tcpNode(l.front, 0) // a new session: its failed connect to a counts against a
		return l.status("a") == "DOWN"
	})
	if up, down := l.nodesStatus(); up != 0 || down != 1 {
		t.Fatalf("nodes_status up %d down %d, want 0 and 1", up, down)
	}
	if st := l.status("b"); st != "Unknown" {
		t.Fatalf("b shows %q, want Unknown", st)
	}
	if got := e.mustTCPCount(l.front, 0, 10); got["b"] != 10 {
		t.Fatalf("sessions with a DOWN: %v, want all on b", got)
	}
}
