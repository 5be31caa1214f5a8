package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Cloud Firewalls and their devices. The rules that span objects live here: unique
// firewall labels, one firewall per NodeBalancer, devices that name existing
// NodeBalancers, and cascades when either side is deleted.

// ListFirewalls returns every firewall in id order.
func (db *DB) ListFirewalls() (out []model.Firewall, err error) {
	err = db.b.View(func(tx Tx) error {
		out, err = scan[model.Firewall](tx, KindFirewall, nil)
		return err
	})
	return out, err
}

// Firewall returns firewall id.
func (db *DB) Firewall(id int) (fw model.Firewall, err error) {
	err = db.b.View(func(tx Tx) error {
		fw, err = get[model.Firewall](tx, KindFirewall, Key(id))
		return err
	})
	return fw, err
}

func checkFirewallLabel(tx Tx, label string, selfID int) error {
	all, err := scan[model.Firewall](tx, KindFirewall, nil)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Label == label && o.ID != selfID {
			return fieldErr("label", "label '"+label+"' is already in use by firewall "+strconv.Itoa(o.ID))
		}
	}
	return nil
}

// CreateFirewall stores fw (its rules at version 1) and attaches it to the
// NodeBalancers nbIDs, all or nothing. Errors about nbIDs name
// "devices.nodebalancers[i]".
func (db *DB) CreateFirewall(fw model.Firewall, nbIDs []int) (model.Firewall, error) {
	err := db.b.Update(func(tx Tx) error {
		if err := checkFirewallLabel(tx, fw.Label, 0); err != nil {
			return err
		}
		id, err := tx.NextID(KindFirewall)
		if err != nil {
			return err
		}
		fw.ID = id
		fw.Created, fw.Updated = db.stamp(), db.stamp()
		fw.Rules.Version = 1
		fw.Rules.Fingerprint = model.RulesFingerprint(fw.Rules)
		if err := put(tx, KindFirewall, Key(id), fw); err != nil {
			return err
		}
		var es model.Errors
		for i, nb := range nbIDs {
			if _, err := db.attach(tx, id, nb, "devices.nodebalancers["+strconv.Itoa(i)+"]"); err != nil {
				if fe, ok := errors.AsType[model.Errors](err); ok {
					es = append(es, fe...)
					continue
				}
				return err
			}
		}
		return es.Err()
	})
	return fw, err
}

// UpdateFirewall applies mutate to firewall id (label, status, tags) and stores the
// result when mutate returns nil and the label stays unique. Rules do not change here.
func (db *DB) UpdateFirewall(id int, mutate func(*model.Firewall) error) (fw model.Firewall, err error) {
	err = db.b.Update(func(tx Tx) error {
		fw, err = get[model.Firewall](tx, KindFirewall, Key(id))
		if err != nil {
			return err
		}
		old := fw
		if err := mutate(&fw); err != nil {
			return err
		}
		fw.ID, fw.Created, fw.Rules = old.ID, old.Created, old.Rules
		if fw.Label != old.Label {
			if err := checkFirewallLabel(tx, fw.Label, id); err != nil {
				return err
			}
		}
		fw.Updated = db.stamp()
		return put(tx, KindFirewall, Key(id), fw)
	})
	return fw, err
}

// UpdateFirewallRules replaces the rules of firewall id, advancing their version.
func (db *DB) UpdateFirewallRules(id int, rules model.FirewallRules) (out model.FirewallRules, err error) {
	err = db.b.Update(func(tx Tx) error {
		fw, err := get[model.Firewall](tx, KindFirewall, Key(id))
		if err != nil {
			return err
		}
		rules.Version = fw.Rules.Version + 1
		rules.Fingerprint = model.RulesFingerprint(rules)
		fw.Rules, fw.Updated = rules, db.stamp()
		out = rules
		return put(tx, KindFirewall, Key(id), fw)
	})
	return out, err
}

// DeleteFirewall removes firewall id and detaches it from everything it guarded.
func (db *DB) DeleteFirewall(id int) error {
	return db.b.Update(func(tx Tx) error {
		if b, err := tx.Get(KindFirewall, Key(id)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		devs, err := scan[model.FirewallDevice](tx, KindFwDevice, Key(id))
		if err != nil {
			return err
		}
		for _, d := range devs {
			if err := tx.Delete(KindFwDevice, Key(id, d.ID)); err != nil {
				return err
			}
		}
		return tx.Delete(KindFirewall, Key(id))
	})
}

// FirewallDevices returns the devices of firewall fwID in id order.
func (db *DB) FirewallDevices(fwID int) (out []model.FirewallDevice, err error) {
	err = db.b.View(func(tx Tx) error {
		if b, err := tx.Get(KindFirewall, Key(fwID)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		out, err = scan[model.FirewallDevice](tx, KindFwDevice, Key(fwID))
		return err
	})
	return out, err
}

// FirewallDevice returns device id of firewall fwID.
func (db *DB) FirewallDevice(fwID, id int) (d model.FirewallDevice, err error) {
	err = db.b.View(func(tx Tx) error {
		d, err = get[model.FirewallDevice](tx, KindFwDevice, Key(fwID, id))
		return err
	})
	return d, err
}

// CreateFirewallDevice attaches firewall fwID to NodeBalancer nbID. Errors about the
// NodeBalancer name the field "id".
func (db *DB) CreateFirewallDevice(fwID, nbID int) (d model.FirewallDevice, err error) {
	err = db.b.Update(func(tx Tx) error {
		if b, err := tx.Get(KindFirewall, Key(fwID)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		d, err = db.attach(tx, fwID, nbID, "id")
		return err
	})
	return d, err
}

// DeleteFirewallDevice detaches device id from firewall fwID.
func (db *DB) DeleteFirewallDevice(fwID, id int) error {
	return db.b.Update(func(tx Tx) error {
		if b, err := tx.Get(KindFwDevice, Key(fwID, id)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		return tx.Delete(KindFwDevice, Key(fwID, id))
	})
}

// NodeBalancerFirewalls returns the firewalls guarding NodeBalancer nbID (at most one).
func (db *DB) NodeBalancerFirewalls(nbID int) (out []model.Firewall, err error) {
	err = db.b.View(func(tx Tx) error {
		if b, err := tx.Get(KindNodeBalancer, Key(nbID)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		dev, ok, err := deviceOf(tx, nbID)
		if err != nil || !ok {
			return err
		}
		fw, err := get[model.Firewall](tx, KindFirewall, Key(dev.FirewallID))
		if err != nil {
			return err
		}
		out = []model.Firewall{fw}
		return nil
	})
	if out == nil && err == nil {
		out = []model.Firewall{}
	}
	return out, err
}

// attach makes a device of firewall fwID for NodeBalancer nbID in tx. field names the
// request field that gave nbID, for errors.
func (db *DB) attach(tx Tx, fwID, nbID int, field string) (model.FirewallDevice, error) {
	if b, err := tx.Get(KindNodeBalancer, Key(nbID)); err != nil {
		return model.FirewallDevice{}, err
	} else if b == nil {
		return model.FirewallDevice{}, fieldErr(field, "NodeBalancer "+strconv.Itoa(nbID)+" does not exist")
	}
	dev, ok, err := deviceOf(tx, nbID)
	if err != nil {
		return model.FirewallDevice{}, err
	}
	if ok {
		reason := "NodeBalancer " + strconv.Itoa(nbID) + " already has firewall " + strconv.Itoa(dev.FirewallID) + "; a NodeBalancer has at most one firewall"
		if dev.FirewallID == fwID {
			reason = "NodeBalancer " + strconv.Itoa(nbID) + " is already a device of this firewall"
		}
		return model.FirewallDevice{}, fieldErr(field, reason)
	}
	id, err := tx.NextID(KindFwDevice)
	if err != nil {
		return model.FirewallDevice{}, err
	}
	d := model.FirewallDevice{ID: id, FirewallID: fwID, Type: model.DeviceNodeBalancer, EntityID: nbID,
		Created: db.stamp(), Updated: db.stamp()}
	return d, put(tx, KindFwDevice, Key(fwID, id), d)
}

// AttachFirewall returns a step for CreateNodeBalancer that attaches firewall fwID
// to the new NodeBalancer in the same transaction; errors name "firewall_id".
func (db *DB) AttachFirewall(fwID int) func(tx Tx, nb model.NodeBalancer) error {
	return func(tx Tx, nb model.NodeBalancer) error {
		if b, err := tx.Get(KindFirewall, Key(fwID)); err != nil {
			return err
		} else if b == nil {
			return fieldErr("firewall_id", "firewall "+strconv.Itoa(fwID)+" does not exist")
		}
		_, err := db.attach(tx, fwID, nb.ID, "firewall_id")
		return err
	}
}

// deviceOf finds the device that attaches a firewall to NodeBalancer nbID.
func deviceOf(tx Tx, nbID int) (model.FirewallDevice, bool, error) {
	var found model.FirewallDevice
	ok := false
	err := tx.Scan(KindFwDevice, nil, func(k, v []byte) error {
		d, err := decode[model.FirewallDevice](KindFwDevice, k, v)
		if err != nil {
			return err
		}
		if d.Type == model.DeviceNodeBalancer && d.EntityID == nbID {
			found, ok = d, true
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, ok, err
}

// detachNodeBalancer removes the device of NodeBalancer nbID, if any (it is being
// deleted).
func detachNodeBalancer(tx Tx, nbID int) error {
	d, ok, err := deviceOf(tx, nbID)
	if err != nil || !ok {
		return err
	}
	return tx.Delete(KindFwDevice, Key(d.FirewallID, d.ID))
}

// FirewallsByNodeBalancer returns, by NodeBalancer id, the firewall attached to it
// (NodeBalancers without one are absent), read in one transaction.
func (db *DB) FirewallsByNodeBalancer() (out map[int]*model.Firewall, err error) {
	err = db.b.View(func(tx Tx) error {
		out, err = guardingFirewalls(tx)
		return err
	})
	return out, err
}

// guardingFirewalls returns, by NodeBalancer id, the firewall attached to it.
func guardingFirewalls(tx Tx) (map[int]*model.Firewall, error) {
	fws, err := scan[model.Firewall](tx, KindFirewall, nil)
	if err != nil || len(fws) == 0 {
		return nil, err
	}
	byID := make(map[int]*model.Firewall, len(fws))
	for i := range fws {
		byID[fws[i].ID] = &fws[i]
	}
	devs, err := scan[model.FirewallDevice](tx, KindFwDevice, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[int]*model.Firewall, len(devs))
	for _, d := range devs {
		if fw := byID[d.FirewallID]; fw != nil && d.Type == model.DeviceNodeBalancer {
			out[d.EntityID] = fw
		}
	}
	return out, nil
}

func decode[T any](kind Kind, k, b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode %s %x: %w", kind, k, err)
	}
	return v, nil
}
