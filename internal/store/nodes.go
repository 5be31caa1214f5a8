package store

// Nodes: list, read, create, update, delete; the rule that nodes never point at this server.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Nodes returns the nodes of config configID of NodeBalancer nbID in id order.
func (db *DB) Nodes(nbID, configID int) (out []model.Node, err error) {
	err = db.b.View(func(tx Tx) error {
		if b, err := tx.Get(KindConfig, Key(nbID, configID)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		out, err = scan[model.Node](tx, KindNode, Key(configID))
		return err
	})
	return out, err
}

// Node returns node id of config configID of NodeBalancer nbID.
func (db *DB) Node(nbID, configID, id int) (n model.Node, err error) {
	err = db.b.View(func(tx Tx) error {
		n, err = get[model.Node](tx, KindNode, Key(configID, id))
		if err == nil && n.NodeBalancerID != nbID {
			err = ErrNotFound
		}
		return err
	})
	return n, err
}

// CreateNode adds node n to config configID of NodeBalancer nbID.
func (db *DB) CreateNode(nbID, configID int, n model.Node) (out model.Node, err error) {
	if err := db.ensureIndex(); err != nil { // checkNodeAddrs reads the address index
		return out, err
	}
	err = db.b.Update(func(tx Tx) error {
		c, err := get[model.Config](tx, KindConfig, Key(nbID, configID))
		if err != nil {
			return err
		}
		count := 0
		if err := tx.Scan(KindNode, Key(configID), func(_, _ []byte) error { count++; return nil }); err != nil {
			return err
		}
		nb, err := get[model.NodeBalancer](tx, KindNodeBalancer, Key(nbID))
		if err != nil {
			return err
		}
		if count >= db.maxNodes(nb.Type) {
			return fieldErr("", fmt.Sprintf("a config has at most %d nodes (%s NodeBalancer)", db.maxNodes(nb.Type), typeName(nb.Type)))
		}
		if out, err = insertNode(tx, c, n); err != nil {
			return err
		}
		return db.checkNodeAddrs(tx, []model.Node{n}, func(int) string { return "address" })
	})
	return out, err
}

func insertNode(tx Tx, c model.Config, n model.Node) (model.Node, error) {
	id, err := tx.NextID(KindNode)
	if err != nil {
		return n, err
	}
	n.ID, n.ConfigID, n.NodeBalancerID = id, c.ID, c.NodeBalancerID
	return n, put(tx, KindNode, Key(c.ID, id), n)
}

// UpdateNode applies mutate to node id and stores the result when mutate returns nil.
func (db *DB) UpdateNode(nbID, configID, id int, mutate func(*model.Node) error) (n model.Node, err error) {
	if err := db.ensureIndex(); err != nil { // checkNodeAddrs reads the address index
		return n, err
	}
	err = db.b.Update(func(tx Tx) error {
		n, err = get[model.Node](tx, KindNode, Key(configID, id))
		if err != nil {
			return err
		}
		if n.NodeBalancerID != nbID {
			return ErrNotFound
		}
		if err := mutate(&n); err != nil {
			return err
		}
		n.ID, n.ConfigID, n.NodeBalancerID = id, configID, nbID
		if err := db.checkNodeAddrs(tx, []model.Node{n}, func(int) string { return "address" }); err != nil {
			return err
		}
		return put(tx, KindNode, Key(configID, id), n)
	})
	return n, err
}

// ---- Nodes must not point at the server itself

// listening returns every address this server listens on as the state in tx has it:
// its own listeners and each configured frontend (NodeBalancer ipv4:config port).
func (db *DB) listening(tx Tx) (model.Listening, error) {
	l := model.Listening{Addrs: slices.Clone(db.own.Addrs), Local: *db.local.Load()}
	nbs, err := scan[model.NodeBalancer](tx, KindNodeBalancer, nil)
	if err != nil {
		return l, err
	}
	for _, nb := range nbs {
		ip, err := netip.ParseAddr(nb.IPv4)
		if err != nil {
			continue
		}
		cfgs, err := scan[model.Config](tx, KindConfig, Key(nb.ID))
		if err != nil {
			return l, err
		}
		for _, c := range cfgs {
			l.Addrs = append(l.Addrs, netip.AddrPortFrom(ip, uint16(c.Port)))
		}
	}
	return l, nil
}

// selfReason is why a node address that reaches listener x is refused.
func selfReason(addr string, x netip.AddrPort) string {
	return "address " + addr + " reaches this server's own listener " + x.String() +
		" (its API, /metrics or a NodeBalancer frontend): a node must not point at the server itself"
}

// checkNodeAddrs refuses nodes whose address reaches one of this server's
// listeners, naming field(i) for the i-th node. It runs after the request's own
// writes, so a config created in the same transaction counts. Its cost does not
// grow with the state: a node's ip is looked up in the address index, and only the
// configs of the NodeBalancer whose frontend it is (if any) are read. Only an
// unspecified address (0.0.0.0, ::), which reaches every loopback frontend, reads
// every frontend. Callers run db.ensureIndex before their transaction.
func (db *DB) checkNodeAddrs(tx Tx, nodes []model.Node, field func(int) string) error {
	if len(nodes) == 0 {
		return nil
	}
	var all *model.Listening                    // every listener, read for an unspecified address
	fronts := map[netip.Addr][]netip.AddrPort{} // the frontends on an ip, by ip looked up
	var es model.Errors
	for i, n := range nodes {
		ap, err := netip.ParseAddrPort(n.Address)
		if err != nil {
			continue // model.ValidateNode refused it already
		}
		ip := ap.Addr().Unmap()
		var l model.Listening
		switch {
		case ip.IsUnspecified():
			if all == nil {
				a, err := db.listening(tx)
				if err != nil {
					return err
				}
				all = &a
			}
			l = *all
		default:
			addrs, ok := fronts[ip]
			if !ok {
				if addrs, err = frontendsOn(tx, ip); err != nil {
					return err
				}
				fronts[ip] = addrs
			}
			l = model.Listening{Addrs: append(slices.Clip(db.own.Addrs), addrs...), Local: *db.local.Load()}
		}
		if x, ok := l.Reaches(ap); ok {
			es.Add(field(i), selfReason(n.Address, x))
		}
	}
	return es.Err()
}

// frontendsOn returns the frontends (ipv4:config port) of the NodeBalancer whose
// ipv4 is ip, none when no NodeBalancer has it; it reads one index entry, and that
// NodeBalancer and its configs.
func frontendsOn(tx Tx, ip netip.Addr) ([]netip.AddrPort, error) {
	v, err := tx.Get(KindAddress, ip.AsSlice())
	if err != nil || len(v) != 8 {
		return nil, err
	}
	nb, err := get[model.NodeBalancer](tx, KindNodeBalancer, v)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if a, err := netip.ParseAddr(nb.IPv4); err != nil || a.Unmap() != ip {
		return nil, nil // ip is its ipv6: the check covers ipv4 frontends only, as listening does
	}
	cfgs, err := scan[model.Config](tx, KindConfig, Key(nb.ID))
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, 0, len(cfgs))
	for _, c := range cfgs {
		out = append(out, netip.AddrPortFrom(ip, uint16(c.Port)))
	}
	return out, nil
}

// checkPortFree refuses config c's port when an existing node already points at the
// frontend it would open (NodeBalancer ipv4:port).
func (db *DB) checkPortFree(tx Tx, c model.Config) error {
	nb, err := get[model.NodeBalancer](tx, KindNodeBalancer, Key(c.NodeBalancerID))
	if err != nil {
		return err
	}
	return checkFrontendFree(tx, nb.IPv4, c.Port, "port")
}

// checkFrontendFree refuses a frontend on ipv4:port, naming field, when an existing
// node points at it. Every node is looked at, but only the few whose stored JSON
// names the ip (or an unspecified address, which reaches the host) are decoded: with
// 50,000 nodes decoding them all would cost a config write ~100 ms.
func checkFrontendFree(tx Tx, ipv4 string, port int, field string) error {
	ip, err := netip.ParseAddr(ipv4)
	if err != nil {
		return nil
	}
	front := model.Listening{Addrs: []netip.AddrPort{netip.AddrPortFrom(ip, uint16(port))}}
	needles := [][]byte{[]byte(ip.String()), []byte("0.0.0.0"), []byte("[::")}
	var found *model.Node
	err = tx.Scan(KindNode, nil, func(k, b []byte) error {
		if !slices.ContainsFunc(needles, func(n []byte) bool { return bytes.Contains(b, n) }) {
			return nil
		}
		var n model.Node
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("decode %s %x: %w", KindNode, k, err)
		}
		ap, err := netip.ParseAddrPort(n.Address)
		if err != nil {
			return nil
		}
		if _, ok := front.Reaches(ap); ok {
			found = &n
			return errStopScan
		}
		return nil
	})
	if err != nil && err != errStopScan {
		return err
	}
	if found != nil {
		return fieldErr(field, fmt.Sprintf("port %d would open frontend %s, which node %d (config %d) points at: a node must not point at the server itself",
			port, front.Addrs[0], found.ID, found.ConfigID))
	}
	return nil
}

// errStopScan ends a Scan early; it never leaves the function that used it.
var errStopScan = errors.New("stop scan")

// DeleteNode removes node id of config configID of NodeBalancer nbID.
func (db *DB) DeleteNode(nbID, configID, id int) error {
	return db.b.Update(func(tx Tx) error {
		n, err := get[model.Node](tx, KindNode, Key(configID, id))
		if err != nil {
			return err
		}
		if n.NodeBalancerID != nbID {
			return ErrNotFound
		}
		return tx.Delete(KindNode, Key(configID, id))
	})
}

// ---- Whole state
