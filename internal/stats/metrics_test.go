package stats

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// scrape fetches h's metrics and returns them by series, e.g.
// `nodebalancer_bytes_total{direction="in",nodebalancer="web"}`.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return parseMetrics(t, rec.Body)
}

func parseMetrics(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// metricKey names a metric with labels as the text format writes it.
func metricKey(name string, kv ...string) string {
	type pair struct{ k, v string }
	var ps []pair
	for i := 0; i < len(kv); i += 2 {
		ps = append(ps, pair{kv[i], kv[i+1]})
	}
	// Sorted, except that a histogram's le comes last.
	sort.Slice(ps, func(i, j int) bool { return ps[j].k == "le" || ps[i].k != "le" && ps[i].k < ps[j].k })
	var b strings.Builder
	b.WriteString(name)
	if len(ps) > 0 {
		b.WriteByte('{')
		for i, p := range ps {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", p.k, p.v)
		}
		b.WriteByte('}')
	}
	return b.String()
}

func TestMetricsExportEveryLevelWithStableNamesAndLabels(t *testing.T) {
	db := teststore.New(t, statsPool)
	nb, cfg, node := createNB(t, db, "web")
	reg := NewRegistry()
	c := &clock{time.Now()}
	var hs []health.NodeStats
	listener := model.ListenerOpen
	s, err := New(Options{DB: db, Registry: reg, Now: c.now,
		HealthOf: func(id int) (health.NodeStats, bool) {
			for _, h := range hs {
				if h.NodeID == id {
					return h, true
				}
			}
			return health.NodeStats{}, false
		},
		Listener: func(int) model.ListenerStatus { return model.ListenerStatus{State: listener} }})
	if err != nil {
		t.Fatal(err)
	}
	hs = []health.NodeStats{{NodeID: node.ID, ConfigID: cfg.ID, Status: model.StatusUp, Checks: 5, CheckFailures: 1,
		PassiveFailures: 2, StatusChanges: 3}}
	for _, ctr := range []*Counters{reg.NodeBalancer(nb.ID), reg.Config(cfg.ID), reg.Node(node.ID)} {
		ctr.Connections.Add(10)
		ctr.Active.Add(2)
		ctr.Refused.Add(1)
		ctr.Requests.Add(40)
		ctr.Response(200)
		ctr.Response(204)
		ctr.Response(503)
		ctr.Response(0)
		ctr.BytesIn.Add(1000)
		ctr.BytesOut.Add(3000)
	}
	s.CheckDone(cfg.ID, node.ID, 2*time.Millisecond, nil)
	s.CheckDone(cfg.ID, node.ID, 40*time.Millisecond, nil)
	s.CheckDone(cfg.ID, node.ID, time.Minute, nil)
	a := NewAccessLog(io.Discard, 1)
	s.SetAccessLog(a)
	a.TCP(1, 1, TCPEntry{})
	a.TCP(1, 1, TCPEntry{}) // queue of one, no writer: dropped

	m := scrape(t, s.MetricsHandler())
	port := strconv.Itoa(cfg.Port)
	nid := strconv.Itoa(node.ID)
	levels := []struct {
		prefix string
		labels []string
	}{
		{"nodebalancer_", []string{"nodebalancer", "web"}},
		{"nodebalancer_config_", []string{"nodebalancer", "web", "config_port", port}},
		{"nodebalancer_node_", []string{"nodebalancer", "web", "config_port", port, "node", "web-1", "node_id", nid}},
	}
	nodeL := levels[2].labels
	want := map[string]float64{
		metricKey("nodebalancer_info", "nodebalancer", "web", "nodebalancer_id", strconv.Itoa(nb.ID), "ipv4", nb.IPv4):                          1,
		metricKey("nodebalancer_config_info", "nodebalancer", "web", "config_port", port, "config_id", strconv.Itoa(cfg.ID), "protocol", "tcp"): 1,
		metricKey("nodebalancer_node_info", append(nodeL, "address", "127.0.94.1:8080", "mode", "accept")...):                                   1,
		metricKey("nodebalancer_transfer_month_bytes", "nodebalancer", "web", "direction", "in"):                                                1000,
		metricKey("nodebalancer_transfer_month_bytes", "nodebalancer", "web", "direction", "out"):                                               3000,
		metricKey("nodebalancer_node_up", nodeL...):                                                                                             1,
		metricKey("nodebalancer_listener_up", levels[1].labels...):                                                                              1,
		metricKey("nodebalancer_node_status", append(nodeL, "status", "UP")...):                                                                 1,
		metricKey("nodebalancer_node_status", append(nodeL, "status", "DOWN")...):                                                               0,
		metricKey("nodebalancer_node_status", append(nodeL, "status", "Unknown")...):                                                            0,
		metricKey("nodebalancer_node_status_changes_total", nodeL...):                                                                           3,
		metricKey("nodebalancer_health_checks_total", append(nodeL, "result", "pass")...):                                                       4,
		metricKey("nodebalancer_health_checks_total", append(nodeL, "result", "fail")...):                                                       1,
		metricKey("nodebalancer_passive_check_failures_total", nodeL...):                                                                        2,
		metricKey("nodebalancer_health_check_duration_seconds_count", nodeL...):                                                                 3,
		metricKey("nodebalancer_health_check_duration_seconds_sum", nodeL...):                                                                   60.042,
		metricKey("nodebalancer_health_check_duration_seconds_bucket", append(nodeL, "le", "0.001")...):                                         0,
		metricKey("nodebalancer_health_check_duration_seconds_bucket", append(nodeL, "le", "0.0025")...):                                        1,
		metricKey("nodebalancer_health_check_duration_seconds_bucket", append(nodeL, "le", "0.05")...):                                          2,
		metricKey("nodebalancer_health_check_duration_seconds_bucket", append(nodeL, "le", "30")...):                                            2,
		metricKey("nodebalancer_health_check_duration_seconds_bucket", append(nodeL, "le", "+Inf")...):                                          3,
		metricKey("nodebalancer_access_log_dropped_total"):                                                                                      1,
	}
	for _, l := range levels {
		want[metricKey(l.prefix+"connections_total", l.labels...)] = 10
		want[metricKey(l.prefix+"active_connections", l.labels...)] = 2
		want[metricKey(l.prefix+"refused_connections_total", l.labels...)] = 1
		want[metricKey(l.prefix+"requests_total", l.labels...)] = 40
		want[metricKey(l.prefix+"responses_total", append(l.labels, "class", "2xx")...)] = 2
		want[metricKey(l.prefix+"responses_total", append(l.labels, "class", "5xx")...)] = 1
		want[metricKey(l.prefix+"responses_total", append(l.labels, "class", "4xx")...)] = 0
		want[metricKey(l.prefix+"responses_total", append(l.labels, "class", "other")...)] = 1
		want[metricKey(l.prefix+"bytes_total", append(l.labels, "direction", "in")...)] = 1000
		want[metricKey(l.prefix+"bytes_total", append(l.labels, "direction", "out")...)] = 3000
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("missing %s", k)
		} else if diff := got - v; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Errorf("Go runtime metrics missing")
	}
	for _, st := range []model.ListenerState{model.ListenerFailed, model.ListenerPending} {
		listener = st
		if got := scrape(t, s.MetricsHandler())[metricKey("nodebalancer_listener_up", levels[1].labels...)]; got != 0 {
			t.Errorf("nodebalancer_listener_up = %v with the listener %s, want 0", got, st)
		}
	}

	// An Unknown node (check none) is not up, and says why.
	hs[0].Status = model.StatusUnknown
	m = scrape(t, s.MetricsHandler())
	for k, v := range map[string]float64{
		metricKey("nodebalancer_node_up", nodeL...):                                  0,
		metricKey("nodebalancer_node_status", append(nodeL, "status", "UP")...):      0,
		metricKey("nodebalancer_node_status", append(nodeL, "status", "Unknown")...): 1,
	} {
		if m[k] != v {
			t.Errorf("Unknown node: %s = %v, want %v", k, m[k], v)
		}
	}

	// A node that leaves the store leaves the metrics, histogram included.
	if err := db.DeleteNodeBalancer(nb.ID); err != nil {
		t.Fatal(err)
	}
	hs = nil
	m = scrape(t, s.MetricsHandler())
	for k := range m {
		if strings.Contains(k, `nodebalancer="web"`) {
			t.Errorf("deleted NodeBalancer still exported: %s", k)
		}
	}
	if len(s.checks.m) != 0 {
		t.Errorf("histograms of deleted nodes kept: %v", s.checks.m)
	}
}

func BenchmarkCheckDone(b *testing.B) {
	s := &Stats{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.CheckDone(1, i%64, time.Duration(i)*time.Microsecond, nil)
	}
}
