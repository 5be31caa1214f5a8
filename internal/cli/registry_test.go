package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// An algorithm and a check type registered by test code alone, as their own files
// would register them.
var _ = balance.Register(balance.AlgorithmDef{
	AlgorithmInfo: model.AlgorithmInfo{Name: "test_cli_first", Label: "First", Protocols: []model.Protocol{model.ProtocolTCP}},
	Build:         func(e balance.Eligible) balance.Picker { return firstPicker{e.Node(0)} },
})

type firstPicker struct{ n *balance.Node }

func (f firstPicker) Pick(q balance.Query) *balance.Node {
	if q.Usable(f.n) {
		return f.n
	}
	return q.Scan(0)
}

func init() {
	health.Register(health.CheckDef{
		CheckInfo: model.CheckInfo{Name: "test_cli_check", Label: "CLI Check", UsesPath: true, UsesBody: true},
		Probe:     func(context.Context, health.Target) error { return nil },
	})
}

// TestConfigFlagsOfferRegisteredValues: the help, the completions and the API
// behind the commands know what was registered, with no edit to the CLI.
func TestConfigFlagsOfferRegisteredValues(t *testing.T) {
	r := runRaw("nodebalancers", "config-create", "--help")
	for _, want := range []string{
		"roundrobin, leastconn, source (not udp), ring_hash (udp only) or test_cli_first (tcp only) (roundrobin)",
		"health check: none, connection, http, http_body or test_cli_check (none)",
		"path the http, http_body and test_cli_check checks request",
		"regular expression the response of the http_body and test_cli_check checks must match",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config-create --help lacks %q:\n%s", want, r.stdout)
		}
	}
	comp := runRaw("__complete", "nodebalancers", "config-create", "1", "--algorithm", "")
	if !strings.Contains(comp.stdout, "test_cli_first\n") {
		t.Errorf("--algorithm completions: %q", comp.stdout)
	}

	e := newTestEnv(t)
	n := e.object("nodebalancers", "create", "--label", "registry-lb")
	c := e.object("nodebalancers", "config-create", id(n), "--port", "80", "--protocol", "tcp",
		"--algorithm", "test_cli_first", "--check", "test_cli_check", "--check_body", "ok")
	if c["algorithm"] != "test_cli_first" || c["check"] != "test_cli_check" {
		t.Fatalf("config-create: %v", c)
	}
	if r := e.run("nodebalancers", "config-update", id(n), id(c), "--protocol", "http", "--algorithm", "test_cli_first"); r.code == 0 ||
		!strings.Contains(r.stderr, "algorithm test_cli_first requires protocol tcp") {
		t.Fatalf("on http: exit %d, %q", r.code, r.stderr)
	}
}
