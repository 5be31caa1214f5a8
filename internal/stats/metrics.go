package stats

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Metric names and labels are documented in README.md; they are a stable interface.
// Labels: nodebalancer (its label), config_port, node (its label) and node_id (node
// labels need not be unique within a config).
var (
	lNB     = []string{"nodebalancer"}
	lConfig = []string{"nodebalancer", "config_port"}
	lNode   = []string{"nodebalancer", "config_port", "node", "node_id"}
)

// with returns labels followed by extra in a new slice.
func with(labels []string, extra ...string) []string {
	return append(append(make([]string, 0, len(labels)+len(extra)), labels...), extra...)
}

// levelDescs are the traffic metrics of one level (NodeBalancer, config or node).
type levelDescs struct {
	conns, active, refused, requests, responses, bytes *prometheus.Desc
}

func newLevelDescs(prefix, what string, labels []string) levelDescs {
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+name, help+" of the "+what+".", with(labels, extra...), nil)
	}
	return levelDescs{
		conns:     d("connections_total", "Client connections accepted"),
		active:    d("active_connections", "Client connections open now"),
		refused:   d("refused_connections_total", "Client connections refused by the throttle, the connection cap or for want of a node"),
		requests:  d("requests_total", "HTTP requests (http and https configs)"),
		responses: d("responses_total", "HTTP responses by status class (1xx…5xx, other)", "class"),
		bytes:     d("bytes_total", "Bytes from clients (direction=in) and to clients (direction=out)", "direction"),
	}
}

var (
	descNB     = newLevelDescs("nodebalancer_", "NodeBalancer", lNB)
	descConfig = newLevelDescs("nodebalancer_config_", "config (port)", lConfig)
	descNode   = newLevelDescs("nodebalancer_node_", "node; connections and bytes of tcp configs count per connection, of http configs per request", lNode)

	descNBInfo = prometheus.NewDesc("nodebalancer_info",
		"Always 1: the id and ipv4 of each NodeBalancer.", []string{"nodebalancer", "nodebalancer_id", "ipv4"}, nil)
	descTransfer = prometheus.NewDesc("nodebalancer_transfer_month_bytes",
		"Bytes from (direction=in) and to (direction=out) clients this calendar month (UTC), as the API's transfer shows.",
		[]string{"nodebalancer", "direction"}, nil)
	descConfigInfo = prometheus.NewDesc("nodebalancer_config_info",
		"Always 1: the id and protocol of each config.", []string{"nodebalancer", "config_port", "config_id", "protocol"}, nil)
	descNodeInfo = prometheus.NewDesc("nodebalancer_node_info",
		"Always 1: the address and mode of each node.", with(lNode, "address", "mode"), nil)
	descNodeUp = prometheus.NewDesc("nodebalancer_node_up",
		"1 when the node's status is UP, 0 when DOWN or Unknown (an Unknown node still takes traffic; see nodebalancer_node_status).", lNode, nil)
	descNodeStatus = prometheus.NewDesc("nodebalancer_node_status",
		"1 for the node's status as the API shows it (UP, DOWN or Unknown: not checked, or check none), 0 for the others.", with(lNode, "status"), nil)
	descStatusChanges = prometheus.NewDesc("nodebalancer_node_status_changes_total",
		"Status transitions of the node (UP/DOWN), including those caused by mode changes.", lNode, nil)
	descChecks = prometheus.NewDesc("nodebalancer_health_checks_total",
		"Active health checks completed, by result (pass, fail).", with(lNode, "result"), nil)
	descPassive = prometheus.NewDesc("nodebalancer_passive_check_failures_total",
		"Failures seen on real traffic while passive checks were on.", lNode, nil)
	descCheckDuration = prometheus.NewDesc("nodebalancer_health_check_duration_seconds",
		"Duration of active health checks, passed or failed.", lNode, nil)
	descAccessDropped = prometheus.NewDesc("nodebalancer_access_log_dropped_total",
		"Access log entries dropped because the writer fell behind.", nil, nil)
)

// latencyBounds are the upper bounds of the check-duration histogram, in seconds:
// from loopback checks (sub-millisecond) to the 30 s check_timeout maximum.
var latencyBounds = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// checkLatency is one node's check-duration histogram, updated with atomics.
type checkLatency struct {
	counts [16]atomic.Uint64 // per bound of latencyBounds, then +Inf
	sumNs  atomic.Int64
}

// checkLatencies holds the histograms by node id. The health checker feeds them
// through the Observer methods of Stats; a scrape reads them.
type checkLatencies struct {
	mu sync.RWMutex
	m  map[int]*checkLatency
}

func (c *checkLatencies) get(nodeID int) *checkLatency {
	c.mu.RLock()
	h := c.m[nodeID]
	c.mu.RUnlock()
	if h != nil {
		return h
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]*checkLatency{}
	}
	if h = c.m[nodeID]; h == nil {
		h = &checkLatency{}
		c.m[nodeID] = h
	}
	return h
}

// CheckDone implements health.Observer: it records the check's duration.
func (s *Stats) CheckDone(_, nodeID int, latency time.Duration, _ error) {
	h := s.checks.get(nodeID)
	sec := latency.Seconds()
	i := 0
	for i < len(latencyBounds) && sec > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(latency))
}

// StatusChanged implements health.Observer. Status changes are counted by the
// checker itself (health.NodeStats.StatusChanges) and exported from there.
func (s *Stats) StatusChanged(int, int, model.NodeStatus, model.NodeStatus) {}

// SetAccessLog makes /metrics export a's drop counter.
func (s *Stats) SetAccessLog(a *AccessLog) { s.access = a }

// Describe implements prometheus.Collector.
func (s *Stats) Describe(ch chan<- *prometheus.Desc) {
	for _, l := range []levelDescs{descNB, descConfig, descNode} {
		ch <- l.conns
		ch <- l.active
		ch <- l.refused
		ch <- l.requests
		ch <- l.responses
		ch <- l.bytes
	}
	for _, d := range []*prometheus.Desc{descNBInfo, descTransfer, descConfigInfo, descNodeInfo, descNodeUp, descNodeStatus,
		descStatusChanges, descChecks, descPassive, descCheckDuration, descAccessDropped, descFirewallDropped} {
		ch <- d
	}
}

var classes = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// emit sends the traffic metrics of c (zero when nil) at level l.
func emit(ch chan<- prometheus.Metric, l levelDescs, c *Counters, labels ...string) {
	if c == nil {
		c = &Counters{}
	}
	counter := func(d *prometheus.Desc, v uint64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), with(labels, extra...)...)
	}
	counter(l.conns, c.Connections.Load())
	ch <- prometheus.MustNewConstMetric(l.active, prometheus.GaugeValue, float64(c.Active.Load()), labels...)
	counter(l.refused, c.Refused.Load())
	counter(l.requests, c.Requests.Load())
	for i := range c.Responses {
		counter(l.responses, c.Responses[i].Load(), classes[i])
	}
	counter(l.bytes, c.BytesIn.Load(), "in")
	counter(l.bytes, c.BytesOut.Load(), "out")
}

// Collect implements prometheus.Collector: it reads the counters, the health
// counters and the check histograms at scrape time, labelled from the store's state.
func (s *Stats) Collect(ch chan<- prometheus.Metric) {
	st, err := s.o.DB.State()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descNBInfo, err)
		return
	}
	v := s.o.Registry.view()
	var hs []health.NodeStats
	if s.o.Health != nil {
		hs = s.o.Health(nil)
	}
	byNode := make(map[int]*health.NodeStats, len(hs))
	for i := range hs {
		byNode[hs[i].NodeID] = &hs[i]
	}
	seen := map[int]bool{}
	for _, nb := range st.NodeBalancers {
		lnb := nb.Label
		ch <- prometheus.MustNewConstMetric(descNBInfo, prometheus.GaugeValue, 1, lnb, strconv.Itoa(nb.ID), nb.IPv4)
		emit(ch, descNB, v.nbs[nb.ID], lnb)
		in, out, _ := s.NodeBalancerTransfer(nb.ID)
		ch <- prometheus.MustNewConstMetric(descTransfer, prometheus.GaugeValue, in*bytesPerMB, lnb, "in")
		ch <- prometheus.MustNewConstMetric(descTransfer, prometheus.GaugeValue, out*bytesPerMB, lnb, "out")
		for _, c := range nb.Configs {
			port := strconv.Itoa(c.Port)
			ch <- prometheus.MustNewConstMetric(descConfigInfo, prometheus.GaugeValue, 1, lnb, port, strconv.Itoa(c.ID), string(c.Protocol))
			emit(ch, descConfig, v.configs[c.ID], lnb, port)
			for _, n := range c.Nodes {
				seen[n.ID] = true
				ln := []string{lnb, port, n.Label, strconv.Itoa(n.ID)}
				ch <- prometheus.MustNewConstMetric(descNodeInfo, prometheus.GaugeValue, 1, with(ln, n.Address, string(n.Mode))...)
				emit(ch, descNode, v.nodes[n.ID], ln...)
				s.collectHealth(ch, byNode[n.ID], n.ID, ln)
			}
		}
	}
	s.checks.prune(seen, byNode)
	s.collectFirewallDrops(ch, st)
	if s.access != nil {
		ch <- prometheus.MustNewConstMetric(descAccessDropped, prometheus.CounterValue, float64(s.access.Dropped()))
	}
}

// nodeStatuses are the values of nodebalancer_node_status's status label.
var nodeStatuses = []model.NodeStatus{model.StatusUp, model.StatusDown, model.StatusUnknown}

// collectHealth sends the health metrics of node id; h is nil when the checker does
// not know the node (yet).
func (s *Stats) collectHealth(ch chan<- prometheus.Metric, h *health.NodeStats, id int, labels []string) {
	var hs health.NodeStats
	if h != nil {
		hs = *h
	}
	up := 0.0
	if hs.Status == model.StatusUp {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descNodeUp, prometheus.GaugeValue, up, labels...)
	status := hs.Status
	if status == "" {
		status = model.StatusUnknown // the checker has no verdict on it (yet)
	}
	for _, st := range nodeStatuses {
		v := 0.0
		if st == status {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descNodeStatus, prometheus.GaugeValue, v, with(labels, string(st))...)
	}
	ch <- prometheus.MustNewConstMetric(descStatusChanges, prometheus.CounterValue, float64(hs.StatusChanges), labels...)
	ch <- prometheus.MustNewConstMetric(descChecks, prometheus.CounterValue, float64(hs.Checks-hs.CheckFailures), with(labels, "pass")...)
	ch <- prometheus.MustNewConstMetric(descChecks, prometheus.CounterValue, float64(hs.CheckFailures), with(labels, "fail")...)
	ch <- prometheus.MustNewConstMetric(descPassive, prometheus.CounterValue, float64(hs.PassiveFailures), labels...)

	s.checks.mu.RLock()
	lat := s.checks.m[id]
	s.checks.mu.RUnlock()
	buckets := make(map[float64]uint64, len(latencyBounds))
	var count uint64
	var sum float64
	if lat != nil {
		for i, b := range latencyBounds {
			count += lat.counts[i].Load()
			buckets[b] = count
		}
		count += lat.counts[len(latencyBounds)].Load()
		sum = time.Duration(lat.sumNs.Load()).Seconds()
	} else {
		for _, b := range latencyBounds {
			buckets[b] = 0
		}
	}
	ch <- prometheus.MustNewConstHistogram(descCheckDuration, count, sum, buckets, labels...)
}

// prune forgets the histograms of nodes that neither the store nor the checker knows.
func (c *checkLatencies) prune(inState map[int]bool, inChecker map[int]*health.NodeStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.m {
		if !inState[id] && inChecker[id] == nil {
			delete(c.m, id)
		}
	}
}

// MetricsHandler serves every metric of s, with the Go runtime's and the process's, in
// the Prometheus text format (or OpenMetrics/protobuf when the scraper asks).
func (s *Stats) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(s, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
