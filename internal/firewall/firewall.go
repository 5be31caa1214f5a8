// Package firewall decides whether a NodeBalancer's Cloud Firewall lets a new client
// connection (or UDP session) in: a firewall's inbound rules are compiled once, when
// they change, into an immutable Table that answers with one prefix-table lookup, and
// each guarded NodeBalancer holds a Guard the data plane asks per new client.
package firewall

import (
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"

	"github.com/gaissmai/bart"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Proto is the transport of the traffic being decided on.
type Proto uint8

// Transports a NodeBalancer serves.
const (
	TCP Proto = iota + 1
	UDP
)

// PolicyRule is the rule index Decide returns when no rule matched and the inbound
// policy decided.
const PolicyRule = -1

// rule is one compiled inbound rule.
type rule struct {
	accept bool
	proto  Proto             // 0 for ICMP and IPENCAP: never matches a connection
	ports  []model.PortRange // nil: every port
}

// Table is a firewall's compiled inbound rule set. It is never modified after
// Compile, so any number of goroutines may use it at once.
type Table struct {
	// nets maps each network named by any rule to the set of rules (bit i = rule i)
	// whose address lists contain it, its supernets' rules included: the longest
	// match for a client address is then every rule that matches the address.
	nets   bart.Table[uint32]
	rules  []rule
	accept bool     // the inbound policy
	names  []string // per rule, then the policy's, for counters and logs
}

// Compile builds the Table of r's inbound rules. r must have passed
// model.ValidateFirewallRules; an error means it did not.
func Compile(r model.FirewallRules) (*Table, error) {
	if len(r.Inbound) > 32 {
		return nil, fmt.Errorf("firewall: %d inbound rules, at most 32 can be compiled", len(r.Inbound))
	}
	t := &Table{accept: r.InboundPolicy != model.ActionDrop}
	own := map[netip.Prefix]uint32{}
	for i, in := range r.Inbound {
		cr := rule{accept: in.Action == model.ActionAccept}
		switch in.Protocol {
		case model.RuleTCP:
			cr.proto = TCP
		case model.RuleUDP:
			cr.proto = UDP
		}
		if in.Ports != "" {
			ports, reason := model.ParsePorts(in.Ports)
			if reason != "" {
				return nil, fmt.Errorf("firewall: inbound[%d]: %s", i, reason)
			}
			cr.ports = ports
		}
		for _, fam := range []struct {
			list []string
			v4   bool
		}{{in.Addresses.IPv4, true}, {in.Addresses.IPv6, false}} {
			for _, s := range fam.list {
				p, reason := model.ParseRuleNetwork(s, fam.v4)
				if reason != "" {
					return nil, fmt.Errorf("firewall: inbound[%d]: %s", i, reason)
				}
				own[p] |= 1 << i
			}
		}
		t.rules = append(t.rules, cr)
		name := in.Label
		if name == "" {
			name = "inbound[" + strconv.Itoa(i) + "]"
		}
		t.names = append(t.names, name)
	}
	t.names = append(t.names, "inbound_policy")
	var plain bart.Table[uint32]
	for p, m := range own {
		plain.Insert(p, m)
	}
	for p := range own {
		var m uint32
		for _, sm := range plain.Supernets(p) { // p itself included
			m |= sm
		}
		t.nets.Insert(p, m)
	}
	return t, nil
}

// Decide tells whether traffic from addr to port over proto is accepted, and which
// rule decided: an index into the inbound rules, or PolicyRule.
func (t *Table) Decide(addr netip.Addr, proto Proto, port uint16) (accept bool, rule int) {
	m, _ := t.nets.Lookup(addr.Unmap())
	for m != 0 {
		i := bits.TrailingZeros32(m) // rules apply in order: the lowest matching index decides
		m &^= 1 << i
		r := &t.rules[i]
		if r.proto == proto && portIn(r.ports, port) {
			return r.accept, i
		}
	}
	return t.accept, PolicyRule
}

func portIn(ports []model.PortRange, port uint16) bool {
	if ports == nil {
		return true
	}
	for _, r := range ports {
		if port >= r.First && port <= r.Last {
			return true
		}
	}
	return false
}

// RuleName names the rule Decide returned: its label, "inbound[i]" when it has none,
// or "inbound_policy".
func (t *Table) RuleName(rule int) string {
	if rule < 0 || rule >= len(t.rules) {
		return t.names[len(t.names)-1]
	}
	return t.names[rule]
}

// Rules returns how many inbound rules the table holds.
func (t *Table) Rules() int { return len(t.rules) }
