package stats

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodebalancer/nodebalancer/internal/store"
)

// FirewallDropSource tells how many connections each NodeBalancer's firewall dropped,
// by the name of the rule that dropped them (firewall.Drops is one).
type FirewallDropSource interface {
	Each(fn func(nbID int, rule string, n uint64))
}

var descFirewallDropped = prometheus.NewDesc("nodebalancer_firewall_dropped_total",
	"Client connections (and UDP sessions) the NodeBalancer's Cloud Firewall dropped, by the rule that dropped them "+
		"(its label, inbound[i] when it has none, or inbound_policy).",
	[]string{"nodebalancer", "nodebalancer_id", "rule"}, nil)

// SetFirewallDrops makes /metrics export d's counters.
func (s *Stats) SetFirewallDrops(d FirewallDropSource) { s.drops = d }

// collectFirewallDrops sends nodebalancer_firewall_dropped_total for every
// NodeBalancer of st whose firewall has a rule (counters start at 0 when armed).
func (s *Stats) collectFirewallDrops(ch chan<- prometheus.Metric, st store.State) {
	if s.drops == nil {
		return
	}
	labels := make(map[int]string, len(st.NodeBalancers))
	for _, nb := range st.NodeBalancers {
		labels[nb.ID] = nb.Label
	}
	s.drops.Each(func(nbID int, rule string, n uint64) {
		if l, ok := labels[nbID]; ok {
			ch <- prometheus.MustNewConstMetric(descFirewallDropped, prometheus.CounterValue, float64(n), l, strconv.Itoa(nbID), rule)
		}
	})
}

// FirewallDrop queues a connection a firewall dropped; it never blocks. Its
// signature is dataplane.Options.DropLog's.
func (a *AccessLog) FirewallDrop(nodeBalancerID, configID int, client, local netip.AddrPort, rule string) {
	a.enqueue(accessRecord{tcp: true, nbID: nodeBalancerID, configID: configID, start: time.Now(),
		client: client, local: local, dropRule: rule})
}
