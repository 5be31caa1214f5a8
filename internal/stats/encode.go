package stats

// This file writes /metrics in the Prometheus text format (0.0.4) as it goes: the
// labels come from the state's in-memory mirror (no store read per scrape), the
// values from the counters, and every line is appended to one reused buffer and
// flushed through a 64 KiB writer, so a scrape's memory does not grow with the
// number of series.

import (
	"bufio"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// label is one label of a series; a numeric value is written without being made a
// string first.
type label struct {
	k   string
	v   string
	n   int
	num bool
}

func l(k, v string) label      { return label{k: k, v: v} }
func ln(k string, n int) label { return label{k: k, n: n, num: true} }

// enc appends series to buf and flushes it to w line by line.
type enc struct {
	w   *bufio.Writer
	buf []byte
	tmp [8]label // with's result, used before the next call
}

// with returns ls (sorted by name) with x inserted where it sorts, le last, as
// Prometheus' own encoder orders labels. The result lives in e.tmp.
func (e *enc) with(ls []label, x label) []label {
	n := 0
	placed := false
	for _, y := range ls {
		if !placed && x.k != "le" && x.k < y.k {
			e.tmp[n] = x
			n++
			placed = true
		}
		e.tmp[n] = y
		n++
	}
	if !placed {
		e.tmp[n] = x
		n++
	}
	return e.tmp[:n]
}

// family writes the HELP and TYPE lines that open a metric family.
func (e *enc) family(name, typ, help string) {
	e.buf = append(e.buf[:0], "# HELP "...)
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, ' ')
	e.buf = append(e.buf, help...)
	e.buf = append(e.buf, "\n# TYPE "...)
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, ' ')
	e.buf = append(e.buf, typ...)
	e.buf = append(e.buf, '\n')
	e.w.Write(e.buf)
}

// head starts a series line: name and labels, which the caller gives sorted by name
// (le last).
func (e *enc) head(name string, ls []label) {
	e.buf = append(e.buf[:0], name...)
	if len(ls) > 0 {
		e.buf = append(e.buf, '{')
		for i, x := range ls {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = append(e.buf, x.k...)
			e.buf = append(e.buf, '=', '"')
			if x.num {
				e.buf = strconv.AppendInt(e.buf, int64(x.n), 10)
			} else {
				e.buf = appendEscaped(e.buf, x.v)
			}
			e.buf = append(e.buf, '"')
		}
		e.buf = append(e.buf, '}')
	}
	e.buf = append(e.buf, ' ')
}

// appendEscaped appends a label value with backslash, quote and newline escaped.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

func (e *enc) u(name string, v uint64, ls ...label) {
	e.head(name, ls)
	e.buf = strconv.AppendUint(e.buf, v, 10)
	e.buf = append(e.buf, '\n')
	e.w.Write(e.buf)
}

func (e *enc) i(name string, v int64, ls ...label) {
	e.head(name, ls)
	e.buf = strconv.AppendInt(e.buf, v, 10)
	e.buf = append(e.buf, '\n')
	e.w.Write(e.buf)
}

func (e *enc) f(name string, v float64, ls ...label) {
	e.head(name, ls)
	e.buf = appendFloat(e.buf, v)
	e.buf = append(e.buf, '\n')
	e.w.Write(e.buf)
}

func appendFloat(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

var zeroCounters Counters

// counters returns c, or zeros when the data plane has none (yet).
func counters(c *Counters) *Counters {
	if c == nil {
		return &zeroCounters
	}
	return c
}

// traffic is one traffic metric of every level: its name after the level's prefix,
// type, help and how to write it from a Counters.
var traffic = []struct {
	name, typ, help string
	write           func(e *enc, name string, c *Counters, ls []label)
}{
	{"connections_total", "counter", "Client connections accepted", func(e *enc, name string, c *Counters, ls []label) {
		e.u(name, c.Connections.Load(), ls...)
	}},
	{"active_connections", "gauge", "Client connections open now", func(e *enc, name string, c *Counters, ls []label) {
		e.i(name, c.Active.Load(), ls...)
	}},
	{"refused_connections_total", "counter", "Client connections refused by the throttle, the connection cap or for want of a node", func(e *enc, name string, c *Counters, ls []label) {
		e.u(name, c.Refused.Load(), ls...)
	}},
	{"requests_total", "counter", "HTTP requests (http and https configs)", func(e *enc, name string, c *Counters, ls []label) {
		e.u(name, c.Requests.Load(), ls...)
	}},
	{"responses_total", "counter", "HTTP responses by status class (1xx…5xx, other)", func(e *enc, name string, c *Counters, ls []label) {
		for i := range c.Responses {
			e.u(name, c.Responses[i].Load(), e.with(ls, l("class", classes[i]))...)
		}
	}},
	{"bytes_total", "counter", "Bytes from clients (direction=in) and to clients (direction=out)", func(e *enc, name string, c *Counters, ls []label) {
		e.u(name, c.BytesIn.Load(), e.with(ls, l("direction", "in"))...)
		e.u(name, c.BytesOut.Load(), e.with(ls, l("direction", "out"))...)
	}},
}

var classes = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// The levels' prefixes and what their help lines name.
const (
	nbWhat     = "NodeBalancer"
	configWhat = "config (port)"
	nodeWhat   = "node; connections and bytes of tcp configs count per connection, of http configs per request"
)

// walk is what one /metrics request walks: the state's NodeBalancers with their
// configs, and a copy of the counter maps.
type walk struct {
	view []store.NodeBalancerView
	v    view
}

// nodeLabels are a node's labels, sorted by name.
func nodeLabels(buf *[7]label, nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) []label {
	buf[0], buf[1], buf[2], buf[3] = ln("config_port", c.Config.Port), l("node", n.Label), ln("node_id", n.ID), l("nodebalancer", nb.Label)
	return buf[:4]
}

// WriteMetrics writes every metric of s in the Prometheus text format to w.
func (s *Stats) WriteMetrics(w *bufio.Writer) error {
	sc, err := s.walk()
	if err != nil {
		return err
	}
	e := &enc{w: w, buf: make([]byte, 0, 512)}
	var lb [7]label

	e.family("nodebalancer_info", "gauge", "Always 1: the id and ipv4 of each NodeBalancer.")
	for _, x := range sc.view {
		nb := x.NodeBalancer
		e.u("nodebalancer_info", 1, l("ipv4", nb.IPv4), l("nodebalancer", nb.Label), ln("nodebalancer_id", nb.ID))
	}
	for _, t := range traffic {
		name := "nodebalancer_" + t.name
		e.family(name, t.typ, t.help+" of the "+nbWhat+".")
		for _, x := range sc.view {
			lb[0] = l("nodebalancer", x.NodeBalancer.Label)
			t.write(e, name, counters(sc.v.nbs[x.NodeBalancer.ID]), lb[:1])
		}
	}
	e.family("nodebalancer_transfer_month_bytes", "gauge",
		"Bytes from (direction=in) and to (direction=out) clients this calendar month (UTC), as the API's transfer shows.")
	for _, x := range sc.view {
		in, out, _ := s.NodeBalancerTransfer(x.NodeBalancer.ID)
		e.f("nodebalancer_transfer_month_bytes", in*bytesPerMB, l("direction", "in"), l("nodebalancer", x.NodeBalancer.Label))
		e.f("nodebalancer_transfer_month_bytes", out*bytesPerMB, l("direction", "out"), l("nodebalancer", x.NodeBalancer.Label))
	}

	e.family("nodebalancer_config_info", "gauge", "Always 1: the id and protocol of each config.")
	eachConfig(sc, func(nb *model.NodeBalancer, c *store.ConfigState) {
		e.u("nodebalancer_config_info", 1, ln("config_id", c.Config.ID), ln("config_port", c.Config.Port),
			l("nodebalancer", nb.Label), l("protocol", string(c.Config.Protocol)))
	})
	for _, t := range traffic {
		name := "nodebalancer_config_" + t.name
		e.family(name, t.typ, t.help+" of the "+configWhat+".")
		eachConfig(sc, func(nb *model.NodeBalancer, c *store.ConfigState) {
			lb[0], lb[1] = ln("config_port", c.Config.Port), l("nodebalancer", nb.Label)
			t.write(e, name, counters(sc.v.configs[c.Config.ID]), lb[:2])
		})
	}
	if s.o.Listener != nil {
		e.family("nodebalancer_listener_up", "gauge",
			"1 when the config's listener is open on this host, 0 when its port could not be bound (or it is not applied yet).")
		eachConfig(sc, func(nb *model.NodeBalancer, c *store.ConfigState) {
			var up uint64
			if s.o.Listener(c.Config.ID).State == model.ListenerOpen {
				up = 1
			}
			e.u("nodebalancer_listener_up", up, ln("config_port", c.Config.Port), l("nodebalancer", nb.Label))
		})
	}
	if s.o.HealthCounts != nil {
		e.family("nodebalancer_config_nodes", "gauge", "Nodes of the config by status (UP, DOWN, Unknown), as the API's nodes_status counts them.")
		eachConfig(sc, func(nb *model.NodeBalancer, c *store.ConfigState) {
			k := s.o.HealthCounts(c.Config.ID)
			for _, st := range []struct {
				name string
				n    int
			}{{string(model.StatusUp), k.Up}, {string(model.StatusDown), k.Down}, {string(model.StatusUnknown), k.Unknown}} {
				e.u("nodebalancer_config_nodes", uint64(st.n), ln("config_port", c.Config.Port), l("nodebalancer", nb.Label), l("status", st.name))
			}
		})
	}

	seen := s.writeNodes(e, sc)
	if s.o.HealthOf != nil || seen != nil {
		s.checks.prune(seen, func(id int) bool {
			if s.o.HealthOf == nil {
				return false
			}
			_, ok := s.o.HealthOf(id)
			return ok
		})
	}
	if s.access != nil {
		e.family("nodebalancer_access_log_dropped_total", "counter", "Access log entries dropped because the writer fell behind.")
		e.u("nodebalancer_access_log_dropped_total", s.access.Dropped())
	}
	s.writeFirewallDrops(e, sc)
	return e.w.Flush()
}

// eachConfig calls fn for every config, in id order within NodeBalancers in id order.
func eachConfig(sc walk, fn func(*model.NodeBalancer, *store.ConfigState)) {
	for _, x := range sc.view {
		for _, c := range x.Configs {
			fn(x.NodeBalancer, c)
		}
	}
}

// eachNode calls fn for every node.
func eachNode(sc walk, fn func(*model.NodeBalancer, *store.ConfigState, *model.Node)) {
	for _, x := range sc.view {
		for _, c := range x.Configs {
			for i := range c.Nodes {
				fn(x.NodeBalancer, c, &c.Nodes[i])
			}
		}
	}
}

// writeNodes writes the per-node series unless they are switched off, and returns
// the ids of the nodes in the state (for pruning check histograms).
func (s *Stats) writeNodes(e *enc, sc walk) map[int]bool {
	seen := map[int]bool{}
	eachNode(sc, func(_ *model.NodeBalancer, _ *store.ConfigState, n *model.Node) { seen[n.ID] = true })
	if s.o.NoNodeSeries {
		return seen
	}
	var lb [7]label
	e.family("nodebalancer_node_info", "gauge", "Always 1: the address and mode of each node.")
	eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
		lb[0], lb[1], lb[2], lb[3], lb[4], lb[5] = l("address", n.Address), ln("config_port", c.Config.Port), l("mode", string(n.Mode)),
			l("node", n.Label), ln("node_id", n.ID), l("nodebalancer", nb.Label)
		e.u("nodebalancer_node_info", 1, lb[:6]...)
	})
	for _, t := range traffic {
		name := "nodebalancer_node_" + t.name
		e.family(name, t.typ, t.help+" of the "+nodeWhat+".")
		eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
			t.write(e, name, counters(sc.v.nodes[n.ID]), nodeLabels(&lb, nb, c, n))
		})
	}
	hs := func(id int) health.NodeStats {
		if s.o.HealthOf == nil {
			return health.NodeStats{}
		}
		h, _ := s.o.HealthOf(id)
		return h
	}
	e.family("nodebalancer_node_up", "gauge", "1 when the node's status is UP, 0 when DOWN or Unknown (an Unknown node still takes traffic; see nodebalancer_node_status).")
	eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
		up := uint64(0)
		if hs(n.ID).Status == model.StatusUp {
			up = 1
		}
		e.u("nodebalancer_node_up", up, nodeLabels(&lb, nb, c, n)...)
	})
	e.family("nodebalancer_node_status", "gauge", "1 for the node's status as the API shows it (UP, DOWN or Unknown: not checked, or check none), 0 for the others.")
	eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
		status := hs(n.ID).Status
		if status == "" {
			status = model.StatusUnknown // the checker has no verdict on it (yet)
		}
		ls := nodeLabels(&lb, nb, c, n)
		for _, st := range nodeStatuses {
			v := uint64(0)
			if st == status {
				v = 1
			}
			e.u("nodebalancer_node_status", v, e.with(ls, l("status", string(st)))...)
		}
	})
	e.family("nodebalancer_node_status_changes_total", "counter", "Status transitions of the node (UP/DOWN), including those caused by mode changes.")
	eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
		e.u("nodebalancer_node_status_changes_total", hs(n.ID).StatusChanges, nodeLabels(&lb, nb, c, n)...)
	})
	e.family("nodebalancer_passive_check_failures_total", "counter", "Failures seen on real traffic while passive checks were on.")
	eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
		e.u("nodebalancer_passive_check_failures_total", hs(n.ID).PassiveFailures, nodeLabels(&lb, nb, c, n)...)
	})
	// Nodes that are not actively checked (check none) and never were have no check
	// series: at 50,000 such nodes that is 20 series each fewer.
	checked := func(c *store.ConfigState, id int) bool {
		return c.Config.Check != model.CheckNone && c.Config.Check != "" || s.checks.lookup(id) != nil
	}
	e.family("nodebalancer_health_checks_total", "counter", "Active health checks completed, by result (pass, fail).")
	eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
		if !checked(c, n.ID) {
			return
		}
		h := hs(n.ID)
		ls := nodeLabels(&lb, nb, c, n)
		e.u("nodebalancer_health_checks_total", h.Checks-h.CheckFailures, e.with(ls, l("result", "pass"))...)
		e.u("nodebalancer_health_checks_total", h.CheckFailures, e.with(ls, l("result", "fail"))...)
	})
	const dur = "nodebalancer_health_check_duration_seconds"
	e.family(dur, "histogram", "Duration of active health checks, passed or failed.")
	eachNode(sc, func(nb *model.NodeBalancer, c *store.ConfigState, n *model.Node) {
		if !checked(c, n.ID) {
			return
		}
		ls := nodeLabels(&lb, nb, c, n)
		var count uint64
		var sum float64
		lat := s.checks.lookup(n.ID)
		for i := range latencyBounds {
			if lat != nil {
				count += lat.counts[i].Load()
			}
			e.u(dur+"_bucket", count, e.with(ls, l("le", leText[i]))...)
		}
		if lat != nil {
			count += lat.counts[len(latencyBounds)].Load()
			sum = time.Duration(lat.sumNs.Load()).Seconds()
		}
		e.u(dur+"_bucket", count, e.with(ls, l("le", "+Inf"))...)
		e.f(dur+"_sum", sum, ls...)
		e.u(dur+"_count", count, ls...)
	})
	return seen
}

// nodeStatuses are the values of nodebalancer_node_status's status label.
var nodeStatuses = []model.NodeStatus{model.StatusUp, model.StatusDown, model.StatusUnknown}

// leText are latencyBounds as the le label writes them.
var leText = func() []string {
	out := make([]string, len(latencyBounds))
	for i, b := range latencyBounds {
		out[i] = string(appendFloat(nil, b))
	}
	return out
}()

// lookup returns node id's histogram, nil when it has none.
func (c *checkLatencies) lookup(id int) *checkLatency {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[id]
}

// walk gathers what a scrape walks: the mirror's view (or, without a mirror, the
// state read once) and the counter maps.
func (s *Stats) walk() (walk, error) {
	m := s.o.Mirror
	if m == nil {
		m = store.NewMirror(s.o.DB)
		if _, err := m.Load(); err != nil {
			return walk{}, err
		}
	}
	return walk{view: m.View(), v: s.o.Registry.view()}, nil
}

// MetricsHandler serves every metric of s in the Prometheus text format, followed by
// the Go runtime's and the process's.
func (s *Stats) MetricsHandler() http.Handler {
	runtime := prometheus.NewRegistry()
	runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		bw := bufio.NewWriterSize(w, 64<<10)
		if err := s.WriteMetrics(bw); err != nil {
			s.log.Error("metrics", "err", err)
			return
		}
		mfs, err := runtime.Gather()
		if err != nil {
			s.log.Error("metrics: runtime", "err", err)
		}
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(bw, mf); err != nil {
				return
			}
		}
		bw.Flush()
	})
}
