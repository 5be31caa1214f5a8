package store

// NodeBalancers: list, read, create (with configs and nodes), update, delete.

import (
	"fmt"
	"strconv"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// ListNodeBalancers returns every NodeBalancer in id order.
func (db *DB) ListNodeBalancers() (out []model.NodeBalancer, err error) {
	err = db.b.View(func(tx Tx) error {
		out, err = scan[model.NodeBalancer](tx, KindNodeBalancer, nil)
		return err
	})
	return out, err
}

// NodeBalancer returns the NodeBalancer id.
func (db *DB) NodeBalancer(id int) (nb model.NodeBalancer, err error) {
	err = db.b.View(func(tx Tx) error {
		nb, err = get[model.NodeBalancer](tx, KindNodeBalancer, Key(id))
		return err
	})
	return nb, err
}

// CreateNodeBalancer stores nb with its configs and their nodes, all or nothing. An
// empty nb.Label is generated; an empty nb.IPv4 is the next free frontend address
// after the last one handed out (wrapping around the pool), a given one must be free
// and inside the pool; nb.IPv6 is the next free address of the pool's IPv6 networks,
// if it has any. Each of also runs in the same transaction once nb is stored
// (AttachFirewall). It returns nb as stored. Its cost does not grow with the
// number of NodeBalancers: labels and addresses are checked in their indexes.
func (db *DB) CreateNodeBalancer(nb model.NodeBalancer, configs []model.ConfigWithNodes, also ...func(Tx, model.NodeBalancer) error) (model.NodeBalancer, error) {
	if err := db.ensureIndex(); err != nil {
		return nb, err
	}
	in := nb
	err := db.b.Update(func(tx Tx) error {
		// A backend may run this more than once (etcd retries a conflict): start
		// from what the caller asked for each time.
		nb = in
		id, err := tx.NextID(KindNodeBalancer)
		if err != nil {
			return err
		}
		nb.ID = id
		if nb.Label == "" {
			nb.Label = "balancer" + strconv.Itoa(id)
		}
		var es model.Errors
		if owner, err := labelOwner(tx, nb.Label); err != nil {
			return err
		} else if owner != 0 {
			es.Add("label", "label '"+nb.Label+"' is already in use by NodeBalancer "+strconv.Itoa(owner))
		}
		ip, reason, err := db.allocate(tx, nb.IPv4)
		if err != nil {
			return err
		}
		if reason != "" {
			es.Add("ipv4", reason)
		}
		ip6, reason, err := db.allocate6(tx)
		if err != nil {
			return err
		}
		if reason != "" {
			es.Add("ipv6", reason)
		}
		type portKey struct {
			space string
			port  int
		}
		ports := map[portKey]bool{}
		for i, c := range configs {
			k := portKey{c.Protocol.PortSpace(), c.Port}
			if ports[k] {
				es.Add("configs["+strconv.Itoa(i)+"].port", portTaken(c.Protocol, c.Port, "another config"))
			}
			ports[k] = true
			if len(c.Nodes) > db.maxNodes(nb.Type) {
				es = append(es, db.tooManyNodes("configs["+strconv.Itoa(i)+"].nodes", nb.Type).(model.Errors)...)
			}
		}
		if len(configs) > model.MaxConfigsPerNB {
			es.Add("configs", fmt.Sprintf("at most %d configs per NodeBalancer", model.MaxConfigsPerNB))
		}
		if len(es) > 0 {
			return es
		}
		nb.IPv4, nb.IPv6 = ip.String(), ip6
		nb.Created, nb.Updated = db.stamp(), db.stamp()
		if err := put(tx, KindNodeBalancer, Key(nb.ID), nb); err != nil {
			return err
		}
		if err := indexNodeBalancer(tx, nb); err != nil {
			return err
		}
		for _, c := range configs {
			if _, err := db.insertConfig(tx, nb.ID, c); err != nil {
				return err
			}
		}
		var nodes []model.Node
		var fields []string
		for i, c := range configs {
			for j, n := range c.Nodes {
				nodes = append(nodes, n)
				fields = append(fields, "configs["+strconv.Itoa(i)+"].nodes["+strconv.Itoa(j)+"].address")
			}
		}
		if err := db.checkNodeAddrs(tx, nodes, func(i int) string { return fields[i] }); err != nil {
			return err
		}
		for i, c := range configs {
			if err := checkFrontendFree(tx, nb.IPv4, c.Port, "configs["+strconv.Itoa(i)+"].port"); err != nil {
				return err
			}
		}
		for _, step := range also {
			if err := step(tx, nb); err != nil {
				return err
			}
		}
		return nil
	})
	return nb, err
}

// UpdateNodeBalancer applies mutate to the NodeBalancer id and stores the result when
// mutate returns nil and the label stays unique.
func (db *DB) UpdateNodeBalancer(id int, mutate func(*model.NodeBalancer) error) (nb model.NodeBalancer, err error) {
	if err := db.ensureIndex(); err != nil {
		return nb, err
	}
	err = db.b.Update(func(tx Tx) error {
		nb, err = get[model.NodeBalancer](tx, KindNodeBalancer, Key(id))
		if err != nil {
			return err
		}
		old := nb
		if err := mutate(&nb); err != nil {
			return err
		}
		nb.ID, nb.IPv4, nb.IPv6, nb.Created, nb.Region = old.ID, old.IPv4, old.IPv6, old.Created, old.Region
		if nb.Label != old.Label {
			owner, err := labelOwner(tx, nb.Label)
			if err != nil {
				return err
			}
			if owner != 0 && owner != id {
				return fieldErr("label", "label '"+nb.Label+"' is already in use by NodeBalancer "+strconv.Itoa(owner))
			}
			if err := tx.Delete(KindLabel, []byte(old.Label)); err != nil {
				return err
			}
			if err := tx.Put(KindLabel, []byte(nb.Label), Key(id)); err != nil {
				return err
			}
		}
		nb.Updated = db.stamp()
		return put(tx, KindNodeBalancer, Key(id), nb)
	})
	return nb, err
}

// DeleteNodeBalancer removes the NodeBalancer id with its configs and nodes.
func (db *DB) DeleteNodeBalancer(id int) error {
	if err := db.ensureIndex(); err != nil {
		return err
	}
	return db.b.Update(func(tx Tx) error {
		nb, err := get[model.NodeBalancer](tx, KindNodeBalancer, Key(id))
		if err != nil {
			return err
		}
		if err := unindexNodeBalancer(tx, nb); err != nil {
			return err
		}
		cfgs, err := scan[model.Config](tx, KindConfig, Key(id))
		if err != nil {
			return err
		}
		for _, c := range cfgs {
			if err := deleteConfig(tx, c); err != nil {
				return err
			}
		}
		if err := detachNodeBalancer(tx, id); err != nil {
			return err
		}
		return tx.Delete(KindNodeBalancer, Key(id))
	})
}

// ---- Configs
