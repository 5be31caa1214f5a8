package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// An algorithm and a check type that exist only in this file, registered as their
// own files in balance and health would register them. No other file of the
// project knows them: the API, the data plane and the checker must take them from
// the registry.

// heaviest sends every client to the eligible node of largest weight (the first
// of equals), and on to the next when that one cannot be used.
var heaviest = balance.Register(balance.AlgorithmDef{
	AlgorithmInfo: model.AlgorithmInfo{Name: "test_e2e_heaviest", Label: "Heaviest", Protocols: []model.Protocol{model.ProtocolTCP}},
	Build: func(e balance.Eligible) balance.Picker {
		var order heaviestFirst
		for j := range e.Len() {
			order = append(order, e.Node(j))
		}
		for i := 1; i < len(order); i++ { // insertion sort, stable: Build is off the hot path
			for k := i; k > 0 && order[k].Weight > order[k-1].Weight; k-- {
				order[k], order[k-1] = order[k-1], order[k]
			}
		}
		return order
	},
})

type heaviestFirst []*balance.Node

func (h heaviestFirst) Pick(q balance.Query) *balance.Node {
	for _, n := range h {
		if q.Usable(n) {
			return n
		}
	}
	return q.Scan(q.Key)
}

// The "test_e2e_name" check opens a session as a client would, reads the name the
// tcp backend greets it with and passes when check_body matches it.
func init() {
	health.Register(health.CheckDef{
		CheckInfo: model.CheckInfo{Name: "test_e2e_name", Label: "Backend Name", UsesBody: true},
		Probe: func(ctx context.Context, t health.Target) error {
			c, err := t.Dialer.DialContext(ctx, "tcp", t.Addr.String())
			if err != nil {
				return err
			}
			defer c.Close()
			if dl, ok := ctx.Deadline(); ok {
				c.SetDeadline(dl)
			}
			if _, err := io.WriteString(c, "check\n"); err != nil {
				return err
			}
			name, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return err
			}
			if !t.Body.MatchString(strings.TrimSuffix(name, "\n")) {
				return errors.New("name does not match check_body")
			}
			return nil
		},
	})
}

// TestRegisteredAlgorithmAndCheckEndToEnd: through linodego and real sockets, the
// API accepts the registered algorithm and check on tcp and refuses the algorithm
// on http in Linode's words; the checker runs the check (a node whose name stops
// matching goes DOWN, in the API too) and the data plane balances with the
// algorithm (every session to the heaviest UP node).
func TestRegisteredAlgorithmAndCheckEndToEnd(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.tcpBackend("a", 1), e.tcpBackend("b", 2), e.tcpBackend("c", 3)

	_, err := e.lc.CreateNodeBalancerConfig(e.ctx, mustNB(t, e), linodego.NodeBalancerConfigCreateOptions{
		Port: 8081, Protocol: linodego.ProtocolHTTP, Algorithm: "test_e2e_heaviest"})
	var apiErr *linodego.Error
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest || !strings.Contains(err.Error(), "algorithm test_e2e_heaviest requires protocol tcp") {
		t.Fatalf("http config with the tcp-only algorithm: %v", err)
	}

	l := e.balancer(linodego.NodeBalancerConfigCreateOptions{
		Protocol: linodego.ProtocolTCP, Algorithm: "test_e2e_heaviest", Stickiness: linodego.StickinessNone,
		Check: "test_e2e_name", CheckBody: "^(a|b)$", CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 1,
	},
		nodeSpec{name: "a", addr: a.addr, weight: 10}, nodeSpec{name: "b", addr: b.addr, weight: 100},
		nodeSpec{name: "c", addr: c.addr, weight: 200})
	cfg, err := e.lc.GetNodeBalancerConfig(e.ctx, l.nbID, l.cfgID)
	if err != nil || cfg.Algorithm != "test_e2e_heaviest" || cfg.Check != "test_e2e_name" {
		t.Fatalf("config as stored: %+v, %v", cfg, err)
	}
	l.waitStatus("a", "UP", upWithin)
	l.waitStatus("b", "UP", upWithin)
	l.waitStatus("c", "DOWN", upWithin) // its name does not match check_body
	if got := e.mustTCPCount(l.front, 1, 12); got["b"] != 12 {
		t.Fatalf("sessions %v: want all 12 on b, the heaviest UP node (c is heavier but DOWN)", got)
	}

	// The check follows check_body: now b fails and c passes, and traffic follows.
	upd := cfg.GetUpdateOptions()
	upd.CheckBody = "^(a|c)$"
	if _, err := e.lc.UpdateNodeBalancerConfig(e.ctx, l.nbID, l.cfgID, upd); err != nil {
		t.Fatal(err)
	}
	l.waitStatus("b", "DOWN", 2*2*time.Second+time.Second+downSlack)
	l.waitStatus("c", "UP", upWithin)
	waitFor(t, modeChangeBound, "sessions to move to c", func() bool {
		n, err := e.tcpNode(l.front, 1)
		return err == nil && n == "c"
	})
	if got := e.mustTCPCount(l.front, 2, 12); got["c"] != 12 {
		t.Fatalf("sessions %v: want all 12 on c", got)
	}
	if a.sessions.Load() == 0 || heaviest.String() != "test_e2e_heaviest" {
		t.Fatal("a was never checked")
	}
}

// mustNB creates a NodeBalancer and returns its id.
func mustNB(t *testing.T, e *env) int {
	t.Helper()
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return nb.ID
}
