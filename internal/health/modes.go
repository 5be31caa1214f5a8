package health

import (
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// SetModes tells the checker that nodes of configuration configID, which keep
// their address, now have the modes given; the configuration's other nodes and its
// check settings (spec) are unchanged. It does for them what Set would, at a cost
// of O(len(nodes)) instead of O(nodes of the configuration), so that a change of
// one node's mode or weight in a config of 1,000 does not walk the 1,000. It
// reports false and changes nothing when that is not the case (an unknown
// configuration, other check settings, a node that is not one of its nodes at that
// address): the caller then calls Set.
func (c *Checker) SetModes(configID int, spec Spec, nodes []model.Node) bool {
	c.mu.Lock()
	cs := c.configs[configID]
	if cs == nil || cs.spec == nil || cs.spec.Spec != spec.normalize() {
		c.mu.Unlock()
		return false
	}
	for _, mn := range nodes {
		n := cs.nodes[mn.ID]
		if n == nil {
			c.mu.Unlock()
			return false
		}
		addr, err := netip.ParseAddrPort(mn.Address)
		if n.addr != addr || n.addrOK != (err == nil) {
			c.mu.Unlock()
			return false
		}
	}
	var events []event
	for _, mn := range nodes {
		events = c.updateLocked(cs.nodes[mn.ID], mn.Mode, cs.spec, false, events)
	}
	c.mu.Unlock()
	c.emit(events)
	return true
}
