package store

import (
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// cursor6Key is where the address index keeps the last ipv6 handed out (its length
// differs from an address's 4 or 16 bytes).
var cursor6Key = []byte("cursor6")

// maxProbe6 bounds how many used addresses allocate6 steps over before it says the
// IPv6 networks are full: they are far larger than any number of NodeBalancers.
const maxProbe6 = 1 << 20

// allocate6 picks a new NodeBalancer's ipv6 in tx: the first free address of the
// frontend pool's IPv6 networks after the last one handed out (never a network's
// first, the subnet-router anycast address), "" when the pool has no IPv6 network.
// reason says why none is free.
func (db *DB) allocate6(tx Tx) (ip string, reason string, err error) {
	if len(db.pool6) == 0 {
		return "", "", nil
	}
	var cur netip.Addr
	if v, err := tx.Get(KindAddress, cursor6Key); err != nil {
		return "", "", err
	} else if len(v) == 16 {
		cur = netip.AddrFrom16([16]byte(v))
	}
	in := func(a netip.Addr) int {
		for i, p := range db.pool6 {
			if a.IsValid() && p.Contains(a) {
				return i
			}
		}
		return -1
	}
	i := in(cur)
	if i < 0 {
		i, cur = 0, db.pool6[0].Masked().Addr()
	}
	for range maxProbe6 {
		next := cur.Next()
		if !next.IsValid() || !db.pool6[i].Contains(next) {
			i = (i + 1) % len(db.pool6)
			next = db.pool6[i].Masked().Addr().Next()
		}
		cur = next
		used, err := addressUsed(tx, cur)
		if err != nil {
			return "", "", err
		}
		if !used {
			b := cur.As16()
			return cur.String(), "", tx.Put(KindAddress, cursor6Key, b[:])
		}
	}
	return "", "the frontend pool's IPv6 networks have no free address", nil
}

// AssignIPv6 gives every NodeBalancer without an ipv6 one from the frontend pool's
// IPv6 networks, in one transaction, so that NodeBalancers made before an IPv6
// network was added to the pool get one too. It returns how many it gave; with no
// IPv6 network in the pool it changes nothing.
func (db *DB) AssignIPv6() (n int, err error) {
	if len(db.pool6) == 0 {
		return 0, nil
	}
	if err := db.ensureIndex(); err != nil {
		return 0, err
	}
	err = db.b.Update(func(tx Tx) error {
		n = 0
		all, err := scan[model.NodeBalancer](tx, KindNodeBalancer, nil)
		if err != nil {
			return err
		}
		for _, nb := range all {
			if nb.IPv6 != "" {
				continue
			}
			ip, reason, err := db.allocate6(tx)
			if err != nil {
				return err
			}
			if reason != "" {
				return fieldErr("ipv6", reason)
			}
			nb.IPv6 = ip
			if err := put(tx, KindNodeBalancer, Key(nb.ID), nb); err != nil {
				return err
			}
			a := netip.MustParseAddr(ip)
			if err := tx.Put(KindAddress, a.AsSlice(), Key(nb.ID)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
