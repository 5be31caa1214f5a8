package stats

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// quiet discards the logs of tests that provoke errors on purpose.
var quiet = slog.New(slog.DiscardHandler)

// clock is a settable fake wall clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// statsPool is the frontend pool of the stores these tests open.
const statsPool = "127.0.93.0/24"

// testRes are small resolutions that keep hand-computed figures readable.
var (
	testHour = Resolution{Width: 10 * time.Second, Buckets: 360}
	testDay  = Resolution{Width: 5 * time.Minute, Buckets: 288}
)

// newTestStats returns Stats on a fresh store, clocked by c.
func newTestStats(t *testing.T, db *store.DB, reg *Registry, c *clock) *Stats {
	t.Helper()
	s, err := New(Options{DB: db, Registry: reg, Now: c.now, Hour: testHour, Day: testDay, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// createNB stores a NodeBalancer with one tcp config of one node.
func createNB(t *testing.T, db *store.DB, label string) (model.NodeBalancer, model.Config, model.Node) {
	t.Helper()
	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Label: label, Region: "local"}, []model.ConfigWithNodes{{
		Config: model.Config{Port: 80, Protocol: model.ProtocolTCP, Algorithm: model.AlgorithmRoundRobin},
		Nodes:  []model.Node{{Label: "web-1", Address: "127.0.94.1:8080", Weight: 50, Mode: model.ModeAccept}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := db.Configs(nb.ID)
	if err != nil || len(cfgs) != 1 {
		t.Fatal(cfgs, err)
	}
	nodes, err := db.Nodes(nb.ID, cfgs[0].ID)
	if err != nil || len(nodes) != 1 {
		t.Fatal(nodes, err)
	}
	return nb, cfgs[0], nodes[0]
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
