package store

import (
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// allocate6 picks a new NodeBalancer's ipv6: the lowest free address of the frontend
// pool's IPv6 networks (never a network's first, the subnet-router anycast address),
// "" when the pool has no IPv6 network. reason says why none is free.
func (db *DB) allocate6(all []model.NodeBalancer) (ip string, reason string) {
	has := false
	used := map[netip.Addr]bool{}
	for _, o := range all {
		if a, err := netip.ParseAddr(o.IPv6); err == nil {
			used[a] = true
		}
	}
	for _, p := range db.pool {
		if p.Addr().Is4() {
			continue
		}
		has = true
		// A pool wider than a /64 is walked from its start: the first free address is
		// found within len(all)+1 steps.
		for a := p.Masked().Addr().Next(); p.Contains(a); a = a.Next() {
			if !used[a] {
				return a.String(), ""
			}
		}
	}
	if !has {
		return "", ""
	}
	return "", "the frontend pool's IPv6 networks have no free address"
}
