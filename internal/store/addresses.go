package store

// Frontend addresses: the label and address indexes and allocation from the pool.

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// cursorKey is where the address index keeps the last address handed out; its length
// differs from an address's 4 bytes.
var cursorKey = []byte("cursor")

// ensureIndex builds the label, address and node address indexes of a store
// written before they existed; it runs once per DB.
func (db *DB) ensureIndex() error {
	db.indexOnce.Do(func() {
		db.indexErr = db.buildNodeAddrIndex()
		if db.indexErr != nil {
			db.indexErr = fmt.Errorf("build store indexes: %w", db.indexErr)
			return
		}
		db.indexErr = db.b.Update(func(tx Tx) error {
			built := false
			if err := tx.Scan(KindLabel, nil, func(_, _ []byte) error { built = true; return errStop }); err != nil && !errors.Is(err, errStop) {
				return err
			}
			if built {
				return nil
			}
			nbs, err := scan[model.NodeBalancer](tx, KindNodeBalancer, nil)
			if err != nil {
				return err
			}
			for _, nb := range nbs {
				if err := indexNodeBalancer(tx, nb); err != nil {
					return err
				}
			}
			return nil
		})
		if db.indexErr != nil {
			db.indexErr = fmt.Errorf("build store indexes: %w", db.indexErr)
		}
	})
	return db.indexErr
}

// indexNodeBalancer records nb's label and address in the indexes.
func indexNodeBalancer(tx Tx, nb model.NodeBalancer) error {
	if err := tx.Put(KindLabel, []byte(nb.Label), Key(nb.ID)); err != nil {
		return err
	}
	for _, s := range []string{nb.IPv4, nb.IPv6} {
		if a, err := netip.ParseAddr(s); err == nil {
			if err := tx.Put(KindAddress, a.AsSlice(), Key(nb.ID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// unindexNodeBalancer removes nb's label and address from the indexes.
func unindexNodeBalancer(tx Tx, nb model.NodeBalancer) error {
	if err := tx.Delete(KindLabel, []byte(nb.Label)); err != nil {
		return err
	}
	for _, s := range []string{nb.IPv4, nb.IPv6} {
		if a, err := netip.ParseAddr(s); err == nil {
			if err := tx.Delete(KindAddress, a.AsSlice()); err != nil {
				return err
			}
		}
	}
	return nil
}

// labelOwner returns the id of the NodeBalancer labelled label, 0 when none is.
func labelOwner(tx Tx, label string) (int, error) {
	v, err := tx.Get(KindLabel, []byte(label))
	if err != nil || v == nil {
		return 0, err
	}
	return lastID(v), nil
}

// addressUsed reports whether a NodeBalancer has address a.
func addressUsed(tx Tx, a netip.Addr) (bool, error) {
	v, err := tx.Get(KindAddress, a.AsSlice())
	return v != nil, err
}

// allocate picks the frontend address: want when given (it must be a usable pool
// address no NodeBalancer uses; a reserved address may be asked for this way), else
// the first address after the last handed out that is neither used nor reserved,
// wrapping around the pool, so that its cost does not grow with the addresses in use
// (and a freed address is not handed out again at once). The pool's network and
// broadcast addresses are never handed out. reason says why no address could be had.
func (db *DB) allocate(tx Tx, want string) (a netip.Addr, reason string, err error) {
	if want != "" {
		a, reason := db.poolAddr("ipv4", want)
		if reason != "" {
			return netip.Addr{}, reason, nil
		}
		used, err := addressUsed(tx, a)
		if err != nil {
			return netip.Addr{}, "", err
		}
		if used {
			return netip.Addr{}, "ipv4 " + want + " is already used by another NodeBalancer", nil
		}
		return a, "", nil
	}
	full := "the frontend pool " + prefixes(db.pool) + " has no free address"
	if len(db.pool) == 0 {
		return netip.Addr{}, full, nil
	}
	var cur netip.Addr
	if v, err := tx.Get(KindAddress, cursorKey); err != nil {
		return netip.Addr{}, "", err
	} else if len(v) == 4 {
		cur = netip.AddrFrom4([4]byte(v))
	}
	if !db.inPool(cur) {
		cur = db.pool[0].Masked().Addr()
	}
	total := db.poolSize()
	for range total {
		cur = db.nextInPool(cur)
		if !isUsable(db.poolOf(cur), cur) {
			continue
		}
		taken, err := addressTaken(tx, cur)
		if err != nil {
			return netip.Addr{}, "", err
		}
		if !taken {
			b := cur.As4()
			return cur, "", tx.Put(KindAddress, cursorKey, b[:])
		}
	}
	return netip.Addr{}, full, nil
}

// addressTaken reports whether a NodeBalancer uses a or a is reserved.
func addressTaken(tx Tx, a netip.Addr) (bool, error) {
	if used, err := addressUsed(tx, a); err != nil || used {
		return used, err
	}
	r, err := tx.Get(KindReservedIP, ipKey(a))
	return r != nil, err
}

// poolAddr parses s as a usable IPv4 address of the frontend pool; the reason names
// field.
func (db *DB) poolAddr(field, s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, field + " must be an IPv4 address"
	}
	p := db.poolOf(a)
	switch {
	case !p.IsValid():
		return netip.Addr{}, field + " " + s + " is outside the frontend pool " + prefixes(db.pool)
	case !isUsable(p, a):
		return netip.Addr{}, field + " " + s + " is the network or broadcast address of the frontend pool " + p.Masked().String()
	}
	return a, ""
}

// firstFree returns the lowest pool address neither used nor reserved (reservations
// are few and rare: a scan is fine here).
func (db *DB) firstFree(tx Tx) (netip.Addr, bool, error) {
	for _, p := range db.pool {
		for a := p.Masked().Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
			if !isUsable(p, a) {
				continue
			}
			taken, err := addressTaken(tx, a)
			if err != nil {
				return netip.Addr{}, false, err
			}
			if !taken {
				return a, true, nil
			}
		}
	}
	return netip.Addr{}, false, nil
}

func (db *DB) inPool(a netip.Addr) bool { return db.poolOf(a).IsValid() }

// poolOf returns the pool prefix holding a, the zero Prefix when none does.
func (db *DB) poolOf(a netip.Addr) netip.Prefix {
	for _, p := range db.pool {
		if a.IsValid() && p.Contains(a) {
			return p
		}
	}
	return netip.Prefix{}
}

// poolSize is how many addresses the pool spans, capped to keep a full scan finite.
func (db *DB) poolSize() int {
	n := 0
	for _, p := range db.pool {
		n += 1 << min(32-p.Bits(), 24)
	}
	return n
}

// nextInPool returns the address after a in the pool's order: on within a's prefix,
// then the start of the next prefix, wrapping after the last.
func (db *DB) nextInPool(a netip.Addr) netip.Addr {
	for i, p := range db.pool {
		if !p.Contains(a) {
			continue
		}
		if n := a.Next(); n.IsValid() && p.Contains(n) {
			return n
		}
		return db.pool[(i+1)%len(db.pool)].Masked().Addr()
	}
	return db.pool[0].Masked().Addr()
}

// isUsable reports whether a may be handed out from p: not its network address, nor
// its broadcast address.
func isUsable(p netip.Prefix, a netip.Addr) bool {
	if p.Bits() < 31 && a == p.Masked().Addr() {
		return false
	}
	return !isBroadcast(p, a)
}

func isBroadcast(p netip.Prefix, a netip.Addr) bool {
	return p.Addr().Is4() && p.Bits() < 31 && !p.Contains(a.Next())
}

func prefixes(ps []netip.Prefix) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}
