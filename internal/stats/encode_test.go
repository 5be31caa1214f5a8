package stats

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// bigState stores nbs NodeBalancers, each with one config of nodes nodes and the
// given check, and returns a loaded mirror of it.
func bigState(t testing.TB, db *store.DB, nbs, nodes int, check model.Check) *store.Mirror {
	for i := range nbs {
		c := model.NewConfig()
		c.Port, c.Protocol, c.Check = 80, model.ProtocolTCP, check
		var ns []model.Node
		for j := range nodes {
			n := model.NewNode()
			n.Label, n.Address = fmt.Sprintf("node-%d", j), fmt.Sprintf("127.0.95.%d:%d", j%250+1, 1000+j/250)
			ns = append(ns, n)
		}
		if _, err := db.CreateNodeBalancer(model.NodeBalancer{Label: fmt.Sprintf("nb-%d-%s", i, check), Region: "local"},
			[]model.ConfigWithNodes{{Config: c, Nodes: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	m := store.NewMirror(db)
	if _, err := m.Load(); err != nil {
		t.Fatal(err)
	}
	return m
}

func body(t *testing.T, s *Stats) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("scrape: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	return rec.Body.String()
}

func TestMetricsWithoutNodeSeriesKeepPerConfigAggregates(t *testing.T) {
	db := teststore.New(t, statsPool)
	m := bigState(t, db, 2, 3, model.CheckConnection)
	reg := NewRegistry()
	s, err := New(Options{DB: db, Registry: reg, Mirror: m, NoNodeSeries: true, Log: quiet,
		HealthCounts: func(int) health.Counts { return health.Counts{Up: 2, Down: 1} }})
	if err != nil {
		t.Fatal(err)
	}
	v := m.View()
	reg.Config(v[0].Configs[0].Config.ID).Connections.Add(7)
	out := body(t, s)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "node_id=") {
			t.Fatalf("per-node series with node series off: %s", line)
		}
	}
	got := parseMetrics(t, strings.NewReader(out))
	for k, want := range map[string]float64{
		metricKey("nodebalancer_config_connections_total", "nodebalancer", "nb-0-connection", "config_port", "80"):       7,
		metricKey("nodebalancer_config_nodes", "nodebalancer", "nb-0-connection", "config_port", "80", "status", "UP"):   2,
		metricKey("nodebalancer_config_nodes", "nodebalancer", "nb-1-connection", "config_port", "80", "status", "DOWN"): 1,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

func TestMetricsLeaveOutCheckSeriesOfUncheckedNodes(t *testing.T) {
	db := teststore.New(t, statsPool)
	bigState(t, db, 1, 2, model.CheckNone)
	m := bigState(t, db, 1, 2, model.CheckHTTP)
	s, err := New(Options{DB: db, Registry: NewRegistry(), Mirror: m, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	out := body(t, s)
	count := func(sub string) int { return strings.Count(out, sub) }
	if n := count(`nodebalancer_health_check_duration_seconds_count{config_port="80",node=`); n != 2 {
		t.Errorf("%d check histograms, want 2 (the http config's nodes)", n)
	}
	if n := count(`nodebalancer="nb-0-none"`); n == 0 || strings.Contains(out, `health_checks_total{config_port="80",node="node-0",node_id="1",nodebalancer="nb-0-none"`) {
		t.Errorf("check none nodes: %d series, or check series present", n)
	}
	if n := count("nodebalancer_node_up{"); n != 4 {
		t.Errorf("%d node_up series, want 4", n)
	}
}

// countingWriter counts bytes and drops them.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(b []byte) (int, error) { w.n += int64(len(b)); return len(b), nil }

func TestMetricsScrapeMemoryDoesNotGrowWithTheOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 20,000 nodes")
	}
	db := teststore.New(t, statsPool)
	m := bigState(t, db, 20, 1000, model.CheckNone)
	s, err := New(Options{DB: db, Registry: NewRegistry(), Mirror: m, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var w countingWriter
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := s.WriteMetrics(bufio.NewWriterSize(&w, 64<<10)); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("20,000 nodes: %d MB written, %d KB allocated", w.n>>20, alloc>>10)
	if w.n < 10<<20 {
		t.Fatalf("only %d bytes written for 20,000 nodes", w.n)
	}
	if alloc > 4<<20 || alloc > uint64(w.n)/8 {
		t.Fatalf("a scrape writing %d bytes allocated %d: it must encode as it goes", w.n, alloc)
	}
}

// BenchmarkWriteMetrics is one scrape of 50,000 nodes (50 configs of 1,000, check
// none) with every node series.
func BenchmarkWriteMetrics(b *testing.B) {
	db := teststore.New(b, statsPool)
	m := bigState(b, db, 50, 1000, model.CheckNone)
	s, err := New(Options{DB: db, Registry: NewRegistry(), Mirror: m, Log: quiet,
		HealthOf: func(int) (health.NodeStats, bool) { return health.NodeStats{}, false }})
	if err != nil {
		b.Fatal(err)
	}
	var w countingWriter
	bw := bufio.NewWriterSize(&w, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.WriteMetrics(bw); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(w.n)/float64(b.N)/1e6, "MB/scrape")
}
