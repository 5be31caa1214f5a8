package store

// The node address index: which nodes point at an ip:port, so that opening a
// frontend can tell whether a node already points at it without reading every node.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// nodeAddrBuilt marks a store whose node address index is complete; its length
// differs from an entry's (18 + 16 bytes), so no entry's prefix scan meets it.
var nodeAddrBuilt = []byte("built")

// nodeAddrPrefix is the index prefix of the nodes on ip:port: the 16 bytes of ip
// without its IPv4-mapped prefix's distinction (Unmap, then As16) and its zone, then
// the port (big-endian), so the node at 127.0.0.1:80 and at [::ffff:127.0.0.1]:80
// share an entry prefix.
func nodeAddrPrefix(ip netip.Addr, port uint16) []byte {
	a := ip.Unmap().WithZone("").As16()
	b := make([]byte, 18, 34)
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[16:], port)
	return b
}

// nodeAddrKey is n's index key, the prefix of its address then its node key
// (config id, node id); ok is false for an address that does not parse, which the
// index leaves out (model.ValidateNode refuses one, and no check reads it).
func nodeAddrKey(n model.Node) (key []byte, ok bool) {
	ap, err := netip.ParseAddrPort(n.Address)
	if err != nil {
		return nil, false
	}
	return append(nodeAddrPrefix(ap.Addr(), ap.Port()), Key(n.ConfigID, n.ID)...), true
}

// indexNode records node n (stored at Key(n.ConfigID, n.ID)) in the node address
// index. Every write of a node goes through it, or through reindexNode.
func indexNode(tx Tx, n model.Node) error {
	if k, ok := nodeAddrKey(n); ok {
		return tx.Put(KindNodeAddr, k, []byte{})
	}
	return nil
}

// unindexNode removes node n, as it is stored, from the node address index.
func unindexNode(tx Tx, n model.Node) error {
	if k, ok := nodeAddrKey(n); ok {
		return tx.Delete(KindNodeAddr, k)
	}
	return nil
}

// reindexNode moves node old's index entry to its new address in n.
func reindexNode(tx Tx, old, n model.Node) error {
	if old.Address == n.Address && old.ConfigID == n.ConfigID && old.ID == n.ID {
		return nil
	}
	if err := unindexNode(tx, old); err != nil {
		return err
	}
	return indexNode(tx, n)
}

// buildNodeAddrIndex indexes every stored node, once, for a store written before
// the index existed (or an empty one); later writes keep it. It indexes one config's
// nodes per transaction, so that an etcd store with 50,000 nodes stays within
// etcd's --max-txn-ops; nodes written meanwhile index themselves, and the mark that
// the index is complete comes last.
func (db *DB) buildNodeAddrIndex() error {
	built := false
	var cfgs []int
	err := db.b.View(func(tx Tx) error {
		if v, err := tx.Get(KindNodeAddr, nodeAddrBuilt); err != nil || v != nil {
			built = v != nil
			return err
		}
		return tx.Scan(KindConfig, nil, func(k, _ []byte) error {
			cfgs = append(cfgs, lastID(k))
			return nil
		})
	})
	if err != nil || built {
		return err
	}
	for _, id := range cfgs {
		err := db.b.Update(func(tx Tx) error {
			return tx.Scan(KindNode, Key(id), func(k, b []byte) error {
				var n model.Node
				if err := json.Unmarshal(b, &n); err != nil {
					return fmt.Errorf("decode %s %x: %w", KindNode, k, err)
				}
				n.ConfigID, n.ID = id, lastID(k) // where it is stored, which its entry names
				return indexNode(tx, n)
			})
		})
		if err != nil {
			return err
		}
	}
	return db.b.Update(func(tx Tx) error { return tx.Put(KindNodeAddr, nodeAddrBuilt, []byte{}) })
}

// nodeKeysOn returns the node keys the index holds under the prefixes of ip:port,
// for each ip of ips, in node key order and without repeats.
func nodeKeysOn(tx Tx, ips []netip.Addr, port uint16) ([][]byte, error) {
	var keys [][]byte
	for _, ip := range ips {
		p := nodeAddrPrefix(ip, port)
		if err := tx.Scan(KindNodeAddr, p, func(k, _ []byte) error {
			if len(k) == len(p)+16 {
				keys = append(keys, bytes.Clone(k[len(p):]))
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	return slices.CompactFunc(keys, bytes.Equal), nil
}

// nodeKeysOnPort returns the node keys of every index entry with port, in node key
// order: a scan of the whole index, for the wildcard frontend only.
func nodeKeysOnPort(tx Tx, port uint16) ([][]byte, error) {
	var keys [][]byte
	err := tx.Scan(KindNodeAddr, nil, func(k, _ []byte) error {
		if len(k) == 34 && binary.BigEndian.Uint16(k[16:]) == port {
			keys = append(keys, bytes.Clone(k[18:]))
		}
		return nil
	})
	slices.SortFunc(keys, bytes.Compare)
	return slices.CompactFunc(keys, bytes.Equal), err
}
