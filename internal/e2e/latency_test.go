package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/linode/linodego"
)

// TestModeChangeLatency measures how long a mode change takes to reach new traffic:
// from the API call returning to the first request (http, on a kept-alive client
// connection) or new session (tcp) that the change decides. With an accept node a and
// a backup node k, rejecting a sends everything to k and accepting a brings it back,
// so the first answer from the other node marks the change. It asserts the 1 s bound
// and logs the median of several runs.
func TestModeChangeLatency(t *testing.T) {
	for _, proto := range []linodego.ConfigProtocol{linodego.ProtocolHTTP, linodego.ProtocolTCP} {
		t.Run(string(proto), func(t *testing.T) {
			l, probe := acceptAndBackup(t, proto, true)
			for i := range 5 {
				if n := probe(); n != "a" {
					t.Fatalf("probe %d before any change reached %s, want a", i, n)
				}
			}
			const runs = 10 // 5 each way
			var lat, call []time.Duration
			stale := 0
			for i := range runs {
				mode, want := linodego.ModeReject, "k"
				if i%2 == 1 {
					mode, want = linodego.ModeAccept, "a"
				}
				before := time.Now()
				l.setMode("a", mode)
				returned := time.Now()
				for {
					n := probe()
					if n == want {
						lat = append(lat, time.Since(returned))
						call = append(call, returned.Sub(before))
						break
					}
					stale++
					if time.Since(returned) > modeChangeBound {
						t.Fatalf("run %d (a → %s): still reaching %s %v after the API call returned", i, mode, n, modeChangeBound)
					}
				}
				// Settled: the old node gets nothing more.
				for range 5 {
					if n := probe(); n != want {
						t.Fatalf("run %d (a → %s): %s answered after %s had", i, mode, n, want)
					}
				}
			}
			slices.Sort(lat)
			slices.Sort(call)
			t.Logf("%s mode-change latency over %d runs (API call return → first request that reflects it): median %v, max %v; %d stale requests in all; API call itself: median %v",
				proto, runs, lat[runs/2], lat[runs-1], stale, call[runs/2])
		})
	}
}

// TestModeChangeServedWhenTheAPIAnswers: on one host, a node mode change is served by
// the time the API call that made it returns (the API applies the committed change
// to the data plane before it answers: Plane.CatchUp), so the very first new
// connection after it reflects it, every time, with no propagation to wait out.
// Node a switches between reject and accept with a backup node k beside it: each
// new connection must reach k while a is rejected, a while it accepts.
func TestModeChangeServedWhenTheAPIAnswers(t *testing.T) {
	for _, proto := range []linodego.ConfigProtocol{linodego.ProtocolHTTP, linodego.ProtocolTCP} {
		t.Run(string(proto), func(t *testing.T) {
			l, probe := acceptAndBackup(t, proto, false) // a new connection per http request
			waitFor(t, modeChangeBound, "a to answer", func() bool { return probe() == "a" })
			for i := range 20 {
				mode, want := linodego.ModeReject, "k"
				if i%2 == 1 {
					mode, want = linodego.ModeAccept, "a"
				}
				l.setMode("a", mode)
				for j := range 3 {
					if n := probe(); n != want {
						t.Fatalf("run %d (a → %s): new connection %d after the API call returned reached %s, want %s", i, mode, j, n, want)
					}
				}
			}
		})
	}
}

// acceptAndBackup starts a balancer of protocol proto with an accept node a and a
// backup node k, and returns it with a probe that reports which node answered one
// request: over http on a kept-alive client connection (keepAlive) or a new one each
// time, over tcp on a new session.
func acceptAndBackup(t *testing.T, proto linodego.ConfigProtocol, keepAlive bool) (*lb, func() string) {
	e := newEnv(t)
	l := e.balancer(unchecked(proto, linodego.StickinessNone),
		nodeSpec{name: "a", addr: e.backend(proto, "a", 1)},
		nodeSpec{name: "k", addr: e.backend(proto, "k", 2), mode: linodego.ModeBackup})
	c := e.httpClient(0, keepAlive)
	return l, func() string {
		if proto == linodego.ProtocolHTTP {
			return mustGet(t, c, l.url("/"), "").node
		}
		node, err := e.tcpNode(l.front, 0)
		if err != nil {
			t.Fatal(err)
		}
		return node
	}
}
