package balance_test

import (
	"slices"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// heaviest is an algorithm written outside the package, with nothing but the
// exported API: every client goes to the eligible node of largest weight (the
// first on a tie), or the next usable one.
var heaviest = balance.Register(balance.AlgorithmDef{
	AlgorithmInfo: model.AlgorithmInfo{Name: "test_heaviest", Label: "Heaviest", Protocols: []model.Protocol{model.ProtocolTCP}},
	Build: func(e balance.Eligible) balance.Picker {
		order := make([]*balance.Node, e.Len())
		for j := range order {
			order[j] = e.Node(j)
		}
		slices.SortStableFunc(order, func(a, b *balance.Node) int { return b.Weight - a.Weight })
		return heaviestPicker(order)
	},
})

type heaviestPicker []*balance.Node

func (h heaviestPicker) Pick(q balance.Query) *balance.Node {
	for _, n := range h {
		if q.Usable(n) {
			return n
		}
	}
	return q.Scan(q.Key)
}

func pool(t *testing.T, algo balance.Algorithm, nodes ...balance.Node) *balance.Pool {
	t.Helper()
	p, err := balance.NewPool(algo, nodes)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRegisteredAlgorithmIsParsedValidatedAndPicks: one Register call makes an
// algorithm known to the API's validation, parsable from its spelling, and used
// by pools with the pool's own rules (backups, DOWN nodes, retries) around it.
func TestRegisteredAlgorithmIsParsedValidatedAndPicks(t *testing.T) {
	a, err := balance.ParseAlgorithm("test_heaviest")
	if err != nil || a != heaviest || a.String() != "test_heaviest" {
		t.Fatalf("ParseAlgorithm = %v, %v", a, err)
	}
	c := model.NewConfig()
	c.Protocol, c.Algorithm = model.ProtocolTCP, "test_heaviest"
	if es := model.ValidateConfig(&c); len(es) > 0 {
		t.Fatalf("validation refused the registered algorithm: %v", es)
	}
	c.Protocol = model.ProtocolHTTP
	if es := model.ValidateConfig(&c); len(es) != 1 || es[0].Reason != "algorithm test_heaviest requires protocol tcp" {
		t.Fatalf("on http: %v", es)
	}

	p := pool(t, heaviest,
		balance.Node{ID: 1, Weight: 10}, balance.Node{ID: 2, Weight: 200}, balance.Node{ID: 3, Weight: 50},
		balance.Node{ID: 4, Weight: 255, Mode: balance.ModeBackup})
	for i := range 10 {
		if n := p.Pick(uint64(i)); n.ID != 2 {
			t.Fatalf("pick %d: node %d, want 2 (the heaviest accept node)", i, n.ID)
		}
	}
	if n := p.PickExcluding(1, p.Lookup(2)); n.ID != 3 {
		t.Errorf("retry excluding 2: node %d, want 3", n.ID)
	}
	p.Lookup(2).State.SetStatus(balance.StatusDown)
	if n := p.Pick(1); n.ID != 3 {
		t.Errorf("2 DOWN, table stale: node %d, want 3", n.ID)
	}
	for _, id := range []int{1, 3} {
		p.Lookup(id).State.SetStatus(balance.StatusDown)
	}
	p.Refresh()
	if n := p.Pick(1); n == nil || n.ID != 4 || !p.BackupsInUse() {
		t.Errorf("every accept node DOWN: %v, want the backup 4", n)
	}
}

// TestEveryModelAlgorithmIsImplemented: what the API accepts, the data plane runs.
func TestEveryModelAlgorithmIsImplemented(t *testing.T) {
	for _, a := range model.Algorithms() {
		if _, err := balance.ParseAlgorithm(string(a.Name)); err != nil {
			t.Errorf("model accepts %s but balance has no implementation", a.Name)
		}
	}
}

func TestRegisterRefusesMistakes(t *testing.T) {
	build := func(balance.Eligible) balance.Picker { return nil }
	for name, d := range map[string]balance.AlgorithmDef{
		"twice":                 {AlgorithmInfo: model.AlgorithmInfo{Name: model.AlgorithmSource}, Build: build},
		"no build":              {AlgorithmInfo: model.AlgorithmInfo{Name: "test_nobuild", Label: "x"}},
		"redescribes Linode's":  {AlgorithmInfo: model.AlgorithmInfo{Name: "roundrobin", Label: "RR"}, Build: build},
		"undescribed extension": {AlgorithmInfo: model.AlgorithmInfo{Name: "test_nolabel"}, Build: build},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Register did not panic", name)
				}
			}()
			balance.Register(d)
		}()
	}
}

// A Build that returns no Picker leaves the pool picking by scan, not panicking.
var nilBuild = balance.Register(balance.AlgorithmDef{
	AlgorithmInfo: model.AlgorithmInfo{Name: "test_nil_build", Label: "Nil"},
	Build:         func(balance.Eligible) balance.Picker { return nil },
})

func TestNilPickerFallsBackToScan(t *testing.T) {
	p := pool(t, nilBuild, balance.Node{ID: 1, Weight: 1}, balance.Node{ID: 2, Weight: 1})
	seen := map[int]bool{}
	for i := range 4 {
		seen[p.Pick(uint64(i)).ID] = true
	}
	if !seen[1] || !seen[2] {
		t.Errorf("picks %v, want both nodes in turn", seen)
	}
}
