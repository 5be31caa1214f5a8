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

// AssignIPv6 gives every NodeBalancer without an ipv6 one from the frontend pool's
// IPv6 networks, in one transaction, so that NodeBalancers made before an IPv6
// network was added to the pool get one too. It returns how many it gave; with no
// IPv6 network in the pool it changes nothing.
func (db *DB) AssignIPv6() (n int, err error) {
	err = db.b.Update(func(tx Tx) error {
		n = 0
		all, err := scan[model.NodeBalancer](tx, KindNodeBalancer, nil)
		if err != nil {
			return err
		}
		for i := range all {
			if all[i].IPv6 != "" {
				continue
			}
			ip, reason := db.allocate6(all)
			if reason != "" {
				return fieldErr("ipv6", reason)
			}
			if ip == "" {
				return nil // no IPv6 network in the pool
			}
			all[i].IPv6 = ip
			if err := put(tx, KindNodeBalancer, Key(all[i].ID), all[i]); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
