package stats

import (
	"net/netip"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// FirewallDropSource tells how many connections each NodeBalancer's firewall dropped,
// by the name of the rule that dropped them (firewall.Drops is one).
type FirewallDropSource interface {
	Each(fn func(nbID int, rule string, n uint64))
}

// SetFirewallDrops makes /metrics export d's counters.
func (s *Stats) SetFirewallDrops(d FirewallDropSource) { s.drops = d }

// writeFirewallDrops writes nodebalancer_firewall_dropped_total for every
// NodeBalancer of the scrape whose firewall has been armed (counters start at 0 then).
func (s *Stats) writeFirewallDrops(e *enc, sc walk) {
	if s.drops == nil {
		return
	}
	const name = "nodebalancer_firewall_dropped_total"
	e.family(name, "counter", "Client connections (and UDP sessions) the NodeBalancer's Cloud Firewall dropped, by the rule "+
		"that dropped them (its label, inbound[i] when it has none, or inbound_policy).")
	nbs := make(map[int]*model.NodeBalancer, len(sc.view))
	for _, x := range sc.view {
		nbs[x.NodeBalancer.ID] = x.NodeBalancer
	}
	s.drops.Each(func(nbID int, rule string, n uint64) {
		if nb := nbs[nbID]; nb != nil {
			e.u(name, n, l("nodebalancer", nb.Label), ln("nodebalancer_id", nbID), l("rule", rule))
		}
	})
}

// FirewallDrop queues a connection a firewall dropped; it never blocks. Its
// signature is dataplane.Options.DropLog's.
func (a *AccessLog) FirewallDrop(nodeBalancerID, configID int, client, local netip.AddrPort, rule string) {
	a.enqueue(accessRecord{tcp: true, nbID: nodeBalancerID, configID: configID, start: time.Now(),
		client: client, local: local, dropRule: rule})
}
