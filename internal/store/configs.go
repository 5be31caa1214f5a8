package store

// Configs: list, read, create, update, delete, rebuild; port rules.

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Configs returns the configs of NodeBalancer nbID in id order.
func (db *DB) Configs(nbID int) (out []model.Config, err error) {
	err = db.b.View(func(tx Tx) error {
		if b, err := tx.Get(KindNodeBalancer, Key(nbID)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		out, err = scan[model.Config](tx, KindConfig, Key(nbID))
		return err
	})
	return out, err
}

// Config returns config id of NodeBalancer nbID.
func (db *DB) Config(nbID, id int) (c model.Config, err error) {
	err = db.b.View(func(tx Tx) error {
		c, err = get[model.Config](tx, KindConfig, Key(nbID, id))
		return err
	})
	return c, err
}

// CreateConfig adds a config (with nodes, all or nothing) to NodeBalancer nbID.
func (db *DB) CreateConfig(nbID int, c model.ConfigWithNodes) (out model.Config, err error) {
	if err := db.ensureIndex(); err != nil { // checkNodeAddrs reads the address index
		return out, err
	}
	err = db.b.Update(func(tx Tx) error {
		nb, err := get[model.NodeBalancer](tx, KindNodeBalancer, Key(nbID))
		if err != nil {
			return err
		}
		if err := checkPort(tx, nbID, 0, c.Protocol, c.Port); err != nil {
			return err
		}
		n := 0
		if err := tx.Scan(KindConfig, Key(nbID), func(_, _ []byte) error { n++; return nil }); err != nil {
			return err
		}
		if n >= model.MaxConfigsPerNB {
			return fieldErr("", fmt.Sprintf("a NodeBalancer has at most %d configs", model.MaxConfigsPerNB))
		}
		if len(c.Nodes) > db.maxNodes(nb.Type) {
			return db.tooManyNodes("nodes", nb.Type)
		}
		if out, err = db.insertConfig(tx, nbID, c); err != nil {
			return err
		}
		if err := db.checkNodeAddrs(tx, c.Nodes, indexed("nodes", "address")); err != nil {
			return err
		}
		return db.checkPortFree(tx, out)
	})
	return out, err
}

// indexed names field key of the i-th element of list: nodes[2].address.
func indexed(list, key string) func(int) string {
	return func(i int) string { return list + "[" + strconv.Itoa(i) + "]." + key }
}

func (db *DB) insertConfig(tx Tx, nbID int, c model.ConfigWithNodes) (model.Config, error) {
	id, err := tx.NextID(KindConfig)
	if err != nil {
		return model.Config{}, err
	}
	c.ID, c.NodeBalancerID = id, nbID
	if err := put(tx, KindConfig, Key(nbID, id), c.Config); err != nil {
		return model.Config{}, err
	}
	for _, n := range c.Nodes {
		if _, err := insertNode(tx, c.Config, n); err != nil {
			return model.Config{}, err
		}
	}
	return c.Config, nil
}

// checkPort refuses a port another config of the NodeBalancer uses in the same port
// space (model.Protocol.PortSpace): a udp config may share a tcp config's number.
func checkPort(tx Tx, nbID, selfID int, proto model.Protocol, port int) error {
	cfgs, err := scan[model.Config](tx, KindConfig, Key(nbID))
	if err != nil {
		return err
	}
	for _, o := range cfgs {
		if o.Port == port && o.ID != selfID && o.Protocol.PortSpace() == proto.PortSpace() {
			return fieldErr("port", portTaken(proto, port, "config "+strconv.Itoa(o.ID)))
		}
	}
	return nil
}

// portTaken words the refusal of a port already used in proto's port space.
func portTaken(proto model.Protocol, port int, by string) string {
	space := "tcp, http and https"
	if proto.PortSpace() == "udp" {
		space = "udp"
	}
	return "port " + strconv.Itoa(port) + " is already used by " + by + " of this NodeBalancer (ports are unique among its " + space + " configs)"
}

// UpdateConfig applies mutate to config id of NodeBalancer nbID and stores the result
// when mutate returns nil and the port stays unique.
func (db *DB) UpdateConfig(nbID, id int, mutate func(*model.Config) error) (c model.Config, err error) {
	err = db.b.Update(func(tx Tx) error {
		c, err = db.updateConfig(tx, nbID, id, mutate)
		return err
	})
	return c, err
}

func (db *DB) updateConfig(tx Tx, nbID, id int, mutate func(*model.Config) error) (model.Config, error) {
	c, err := get[model.Config](tx, KindConfig, Key(nbID, id))
	if err != nil {
		return c, err
	}
	oldPort := c.Port
	if err := mutate(&c); err != nil {
		return c, err
	}
	c.ID, c.NodeBalancerID = id, nbID
	if err := checkPort(tx, nbID, id, c.Protocol, c.Port); err != nil {
		return c, err
	}
	if c.Port != oldPort {
		if err := db.checkPortFree(tx, c); err != nil {
			return c, err
		}
	}
	return c, put(tx, KindConfig, Key(nbID, id), c)
}

// DeleteConfig removes config id of NodeBalancer nbID with its nodes.
func (db *DB) DeleteConfig(nbID, id int) error {
	return db.b.Update(func(tx Tx) error {
		c, err := get[model.Config](tx, KindConfig, Key(nbID, id))
		if err != nil {
			return err
		}
		return deleteConfig(tx, c)
	})
}

func deleteConfig(tx Tx, c model.Config) error {
	var keys [][]byte
	if err := tx.Scan(KindNode, Key(c.ID), func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(KindNode, k); err != nil {
			return err
		}
	}
	return tx.Delete(KindConfig, Key(c.NodeBalancerID, c.ID))
}

// RebuildConfig replaces config id and its node set in one transaction: mutate edits
// the config; nodes with an ID update that node (which must belong to the config),
// nodes without are created, and existing nodes not listed are deleted.
func (db *DB) RebuildConfig(nbID, id int, mutate func(*model.Config) error, nodes []model.Node) (out model.ConfigWithNodes, err error) {
	if err := db.ensureIndex(); err != nil { // checkNodeAddrs reads the address index
		return out, err
	}
	err = db.b.Update(func(tx Tx) error {
		out = model.ConfigWithNodes{} // a retried attempt starts over
		c, err := db.updateConfig(tx, nbID, id, mutate)
		if err != nil {
			return err
		}
		nb, err := get[model.NodeBalancer](tx, KindNodeBalancer, Key(nbID))
		if err != nil {
			return err
		}
		if len(nodes) > db.maxNodes(nb.Type) {
			return db.tooManyNodes("nodes", nb.Type)
		}
		existing, err := scan[model.Node](tx, KindNode, Key(id))
		if err != nil {
			return err
		}
		have := map[int]bool{}
		for _, n := range existing {
			have[n.ID] = true
		}
		keep := map[int]bool{}
		var es model.Errors
		for i, n := range nodes {
			if n.ID == 0 {
				continue
			}
			f := "nodes[" + strconv.Itoa(i) + "].id"
			switch {
			case !have[n.ID]:
				es.Add(f, "node "+strconv.Itoa(n.ID)+" is not a node of config "+strconv.Itoa(id))
			case keep[n.ID]:
				es.Add(f, "node "+strconv.Itoa(n.ID)+" is listed twice")
			}
			keep[n.ID] = true
		}
		if len(es) > 0 {
			return es
		}
		for _, n := range existing {
			if !keep[n.ID] {
				if err := tx.Delete(KindNode, Key(id, n.ID)); err != nil {
					return err
				}
			}
		}
		out.Config = c
		for _, n := range nodes {
			if n.ID == 0 {
				n, err = insertNode(tx, c, n)
			} else {
				n.ConfigID, n.NodeBalancerID = id, nbID
				err = put(tx, KindNode, Key(id, n.ID), n)
			}
			if err != nil {
				return err
			}
			out.Nodes = append(out.Nodes, n)
		}
		return db.checkNodeAddrs(tx, nodes, indexed("nodes", "address"))
	})
	return out, err
}

// ---- Nodes
