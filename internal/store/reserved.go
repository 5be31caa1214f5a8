package store

import (
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Reserved frontend addresses. A reserved address is one record keyed by the
// address; which NodeBalancer uses it is never stored twice: it is the NodeBalancer
// whose ipv4 it is. So deleting a NodeBalancer leaves the reservation as it was,
// unreserving an address in use leaves the NodeBalancer its address (it becomes an
// ordinary one, freed with the NodeBalancer, as Linode documents), and the allocator
// (allocate, in the same transaction as every NodeBalancer create) skips reserved
// addresses unless one is asked for by address. ipKey is the address index's key
// form too (the 4 bytes).

// ReservedIPUse is a reserved address with the NodeBalancer using it, if any.
type ReservedIPUse struct {
	model.ReservedIP
	// UsedBy is the NodeBalancer whose ipv4 it is; nil when unassigned.
	UsedBy *model.NodeBalancer
	// Pool is the frontend pool network the address belongs to (invalid when the
	// pool no longer holds it, after the operator narrowed --frontend-pool).
	Pool netip.Prefix
}

// ipKey is the key of a reserved address: its 4 bytes, so keys sort as addresses do.
func ipKey(a netip.Addr) []byte { b := a.As4(); return b[:] }

// withUse pairs reserved addresses with the NodeBalancers using them, found through
// the address index (no scan of the NodeBalancers).
func (db *DB) withUse(tx Tx, rs []model.ReservedIP) ([]ReservedIPUse, error) {
	out := make([]ReservedIPUse, len(rs))
	for i, r := range rs {
		out[i] = ReservedIPUse{ReservedIP: r}
		a, err := netip.ParseAddr(r.Address)
		if err != nil || !a.Is4() {
			continue
		}
		out[i].Pool = db.poolOf(a).Masked()
		v, err := tx.Get(KindAddress, ipKey(a))
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		nb, err := get[model.NodeBalancer](tx, KindNodeBalancer, v)
		if err != nil {
			return nil, err
		}
		out[i].UsedBy = &nb
	}
	return out, nil
}

// parseReserved parses addr as a key; a string that is not an IPv4 address names no
// reserved address (ErrNotFound).
func parseReserved(addr string) (netip.Addr, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Addr{}, ErrNotFound
	}
	return a, nil
}

// ReservedIPs returns every reserved address in address order, with its user.
func (db *DB) ReservedIPs() (out []ReservedIPUse, err error) {
	if err := db.ensureIndex(); err != nil { // withUse reads the address index
		return out, err
	}
	err = db.b.View(func(tx Tx) error {
		rs, err := scan[model.ReservedIP](tx, KindReservedIP, nil)
		if err != nil {
			return err
		}
		out, err = db.withUse(tx, rs)
		return err
	})
	return out, err
}

// ReservedIP returns the reserved address addr with its user.
func (db *DB) ReservedIP(addr string) (out ReservedIPUse, err error) {
	a, err := parseReserved(addr)
	if err != nil {
		return out, err
	}
	if err := db.ensureIndex(); err != nil {
		return out, err
	}
	err = db.b.View(func(tx Tx) error {
		r, err := get[model.ReservedIP](tx, KindReservedIP, ipKey(a))
		if err != nil {
			return err
		}
		us, err := db.withUse(tx, []model.ReservedIP{r})
		if err == nil {
			out = us[0]
		}
		return err
	})
	return out, err
}

// ReserveIP reserves r.Address, or when it is empty the lowest pool address that no
// NodeBalancer uses and nobody reserved. A given address must be in the frontend
// pool and not reserved yet; it may be in use by a NodeBalancer, whose address it
// then keeps after that NodeBalancer is deleted.
func (db *DB) ReserveIP(r model.ReservedIP) (out ReservedIPUse, err error) {
	if err := db.ensureIndex(); err != nil { // withUse reads the address index
		return out, err
	}
	err = db.b.Update(func(tx Tx) error {
		var a netip.Addr
		if r.Address == "" {
			free, ok, ferr := db.firstFree(tx)
			if ferr != nil {
				return ferr
			}
			a = free
			if !ok {
				return fieldErr("", "the frontend pool "+prefixes(db.pool)+" has no address left to reserve")
			}
		} else {
			var reason string
			if a, reason = db.poolAddr("address", r.Address); reason != "" {
				return fieldErr("address", reason)
			}
			if b, err := tx.Get(KindReservedIP, ipKey(a)); err != nil {
				return err
			} else if b != nil {
				return fieldErr("address", "address "+a.String()+" is already reserved")
			}
		}
		r.Address, r.Created = a.String(), db.stamp()
		if r.Tags == nil {
			r.Tags = []string{}
		}
		if err := put(tx, KindReservedIP, ipKey(a), r); err != nil {
			return err
		}
		us, err := db.withUse(tx, []model.ReservedIP{r})
		if err == nil {
			out = us[0]
		}
		return err
	})
	return out, err
}

// UpdateReservedIP applies mutate to the reserved address addr (its tags; the
// address, region and creation time are kept).
func (db *DB) UpdateReservedIP(addr string, mutate func(*model.ReservedIP) error) (out ReservedIPUse, err error) {
	a, err := parseReserved(addr)
	if err != nil {
		return out, err
	}
	if err := db.ensureIndex(); err != nil {
		return out, err
	}
	err = db.b.Update(func(tx Tx) error {
		r, err := get[model.ReservedIP](tx, KindReservedIP, ipKey(a))
		if err != nil {
			return err
		}
		old := r
		if err := mutate(&r); err != nil {
			return err
		}
		r.Address, r.Region, r.Created = old.Address, old.Region, old.Created
		if r.Tags == nil {
			r.Tags = []string{}
		}
		if err := put(tx, KindReservedIP, ipKey(a), r); err != nil {
			return err
		}
		us, err := db.withUse(tx, []model.ReservedIP{r})
		if err == nil {
			out = us[0]
		}
		return err
	})
	return out, err
}

// DeleteReservedIP unreserves addr. A NodeBalancer using it keeps it as an ordinary
// address, freed when that NodeBalancer is deleted.
func (db *DB) DeleteReservedIP(addr string) error {
	a, err := parseReserved(addr)
	if err != nil {
		return err
	}
	return db.b.Update(func(tx Tx) error {
		if b, err := tx.Get(KindReservedIP, ipKey(a)); err != nil || b == nil {
			if err != nil {
				return err
			}
			return ErrNotFound
		}
		return tx.Delete(KindReservedIP, ipKey(a))
	})
}
