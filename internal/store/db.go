package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// DB is nodebalancer's typed view of a Backend: every method is one transaction and
// enforces the rules that span objects. Field validation of a single object is the
// caller's (model.Validate*) and happens before, or inside the mutate functions.
type DB struct {
	b     Backend
	pool  []netip.Prefix // the frontend pool's IPv4 networks
	pool6 []netip.Prefix // its IPv6 networks
	own   model.Listening
	now   func() time.Time
	o     Options

	indexOnce sync.Once
	indexErr  error
}

// Options configure a DB.
type Options struct {
	// FrontendPool is where NodeBalancer ipv4 addresses come from.
	FrontendPool []netip.Prefix
	// Own are the server's listeners besides its frontends (the API, /metrics) and
	// the host's addresses: no node may point at them, nor at a configured frontend.
	Own model.Listening
	// Now is the clock used for created/updated times; time.Now when nil.
	Now func() time.Time
	// MaxNodesPerConfig bounds the nodes of a config of a common NodeBalancer
	// (DefaultMaxNodesPerConfig when ≤ 0).
	MaxNodesPerConfig int
	// MaxNodesPerConfigPremium bounds them for a premium NodeBalancer
	// (DefaultMaxNodesPerConfigPremium when ≤ 0).
	MaxNodesPerConfigPremium int
}

// Linode's per-config node limits: 1,000 on the common plan, 2,000 on premium.
const (
	DefaultMaxNodesPerConfig        = model.MaxNodesPerCf
	DefaultMaxNodesPerConfigPremium = 2000
)

// New returns a DB over b.
func New(b Backend, o Options) *DB {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxNodesPerConfig <= 0 {
		o.MaxNodesPerConfig = DefaultMaxNodesPerConfig
	}
	if o.MaxNodesPerConfigPremium <= 0 {
		o.MaxNodesPerConfigPremium = DefaultMaxNodesPerConfigPremium
	}
	db := &DB{b: b, own: o.Own, now: o.Now, o: o}
	for _, p := range o.FrontendPool {
		if p.Addr().Is4() {
			db.pool = append(db.pool, p)
		} else {
			db.pool6 = append(db.pool6, p)
		}
	}
	return db
}

// maxNodes is the per-config node limit of a NodeBalancer of type t.
func (db *DB) maxNodes(t model.Type) int {
	if t == model.TypePremium {
		return db.o.MaxNodesPerConfigPremium
	}
	return db.o.MaxNodesPerConfig
}

// tooManyNodes is the error of a config that would exceed its node limit.
func (db *DB) tooManyNodes(field string, t model.Type) error {
	return fieldErr(field, fmt.Sprintf("at most %d nodes per config (%s NodeBalancer)", db.maxNodes(t), typeName(t)))
}

func typeName(t model.Type) string {
	if t == "" {
		return string(model.TypeCommon)
	}
	return string(t)
}

// Backend returns the Backend under db.
func (db *DB) Backend() Backend { return db.b }

// Close closes the backend.
func (db *DB) Close() error { return db.b.Close() }

// Watch sends what changed after revision after; see Backend.Watch and Mirror.
func (db *DB) Watch(ctx context.Context, after uint64) <-chan Change { return db.b.Watch(ctx, after) }

func (db *DB) stamp() time.Time { return db.now().UTC().Truncate(time.Second) }

// fieldErr wraps one field error as a model.Errors value.
func fieldErr(field, reason string) error { return model.Errors{{Field: field, Reason: reason}} }

// ---- NodeBalancers

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

// cursorKey is where the address index keeps the last address handed out; its length
// differs from an address's 4 bytes.
var cursorKey = []byte("cursor")

// ensureIndex builds the label and address indexes of a store written before they
// existed; it runs once per DB.
func (db *DB) ensureIndex() error {
	db.indexOnce.Do(func() {
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
	l := model.Listening{Addrs: slices.Clone(db.own.Addrs), Local: db.own.Local}
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
// writes, so a config created in the same transaction counts.
func (db *DB) checkNodeAddrs(tx Tx, nodes []model.Node, field func(int) string) error {
	if len(nodes) == 0 {
		return nil
	}
	l, err := db.listening(tx)
	if err != nil {
		return err
	}
	var es model.Errors
	for i, n := range nodes {
		ap, err := netip.ParseAddrPort(n.Address)
		if err != nil {
			continue // model.ValidateNode refused it already
		}
		if x, ok := l.Reaches(ap); ok {
			es.Add(field(i), selfReason(n.Address, x))
		}
	}
	return es.Err()
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

// State is the whole desired state at one revision, what the data plane converges to.
type State struct {
	Revision      uint64
	NodeBalancers []NodeBalancerState
}

// NodeBalancerState is one NodeBalancer with its configs and their nodes.
type NodeBalancerState struct {
	model.NodeBalancer
	Configs []model.ConfigWithNodes
	// Firewall is the firewall attached to the NodeBalancer, nil when none is.
	Firewall *model.Firewall
}

// State reads the whole desired state in one transaction.
func (db *DB) State() (st State, err error) {
	err = db.b.View(func(tx Tx) error {
		nbs, err := scan[model.NodeBalancer](tx, KindNodeBalancer, nil)
		if err != nil {
			return err
		}
		guards, err := guardingFirewalls(tx)
		if err != nil {
			return err
		}
		for _, nb := range nbs {
			s := NodeBalancerState{NodeBalancer: nb, Firewall: guards[nb.ID]}
			cfgs, err := scan[model.Config](tx, KindConfig, Key(nb.ID))
			if err != nil {
				return err
			}
			for _, c := range cfgs {
				nodes, err := scan[model.Node](tx, KindNode, Key(c.ID))
				if err != nil {
					return err
				}
				s.Configs = append(s.Configs, model.ConfigWithNodes{Config: c, Nodes: nodes})
			}
			st.NodeBalancers = append(st.NodeBalancers, s)
		}
		st.Revision, err = tx.Revision()
		return err
	})
	return st, err
}

// ---- Tokens

// Tokens returns every token in id order.
func (db *DB) Tokens() (out []model.Token, err error) {
	err = db.b.View(func(tx Tx) error {
		out, err = scan[model.Token](tx, KindToken, nil)
		return err
	})
	return out, err
}

// Token returns token id.
func (db *DB) Token(id int) (t model.Token, err error) {
	err = db.b.View(func(tx Tx) error {
		t, err = get[model.Token](tx, KindToken, Key(id))
		return err
	})
	return t, err
}

// TokenByHash returns the token whose secret hashes to hash.
func (db *DB) TokenByHash(hash string) (model.Token, error) {
	all, err := db.Tokens()
	if err != nil {
		return model.Token{}, err
	}
	for _, t := range all {
		if t.Hash == hash {
			return t, nil
		}
	}
	return model.Token{}, ErrNotFound
}

// CreateToken stores t with a new id and creation time.
func (db *DB) CreateToken(t model.Token) (model.Token, error) {
	err := db.b.Update(func(tx Tx) error {
		id, err := tx.NextID(KindToken)
		if err != nil {
			return err
		}
		t.ID, t.Created = id, db.stamp()
		return put(tx, KindToken, Key(id), t)
	})
	return t, err
}

// UpdateToken applies mutate to token id.
func (db *DB) UpdateToken(id int, mutate func(*model.Token) error) (t model.Token, err error) {
	err = db.b.Update(func(tx Tx) error {
		t, err = get[model.Token](tx, KindToken, Key(id))
		if err != nil {
			return err
		}
		old := t
		if err := mutate(&t); err != nil {
			return err
		}
		t.ID, t.Hash, t.Created = old.ID, old.Hash, old.Created
		return put(tx, KindToken, Key(id), t)
	})
	return t, err
}

// DeleteToken revokes token id.
func (db *DB) DeleteToken(id int) error {
	return db.b.Update(func(tx Tx) error {
		if b, err := tx.Get(KindToken, Key(id)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		return tx.Delete(KindToken, Key(id))
	})
}

// HasTokens reports whether any token exists (bootstrap runs when none does).
func (db *DB) HasTokens() (bool, error) {
	found := false
	err := db.b.View(func(tx Tx) error {
		return tx.Scan(KindToken, nil, func(_, _ []byte) error { found = true; return errStop })
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

var errStop = errors.New("stop")

// ---- Blobs

// Blob returns the named blob, nil when absent.
func (db *DB) Blob(name string) (b []byte, err error) {
	err = db.b.View(func(tx Tx) error {
		v, err := tx.Get(KindBlob, []byte(name))
		b = append([]byte(nil), v...)
		if v == nil {
			b = nil
		}
		return err
	})
	return b, err
}

// PutBlob stores the named blob. Blobs are not desired state: writing one does not
// wake watchers.
func (db *DB) PutBlob(name string, b []byte) error {
	return db.b.Update(func(tx Tx) error { return tx.Put(KindBlob, []byte(name), b) })
}

// Blobs returns every blob whose name begins with prefix, by name.
func (db *DB) Blobs(prefix string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := db.b.View(func(tx Tx) error {
		return tx.Scan(KindBlob, []byte(prefix), func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// EnsureBlob returns the named blob, first storing make()'s value when the blob is
// absent or not valid by ok — in one transaction, so that hosts starting together
// on a shared store agree on one value.
func (db *DB) EnsureBlob(name string, ok func([]byte) bool, make func() ([]byte, error)) (b []byte, err error) {
	err = db.b.Update(func(tx Tx) error {
		v, err := tx.Get(KindBlob, []byte(name))
		if err != nil {
			return err
		}
		if v != nil && ok(v) {
			b = append([]byte(nil), v...)
			return nil
		}
		if b, err = make(); err != nil {
			return err
		}
		return tx.Put(KindBlob, []byte(name), b)
	})
	return b, err
}

// CreateFirstToken stores t, as CreateToken does, only when no token exists yet, in
// one transaction: of hosts bootstrapping a shared store together, one creates it.
// created reports whether this call did.
func (db *DB) CreateFirstToken(t model.Token) (out model.Token, created bool, err error) {
	err = db.b.Update(func(tx Tx) error {
		created = false
		exists := false
		if err := tx.Scan(KindToken, nil, func(_, _ []byte) error { exists = true; return errStop }); err != nil && !errors.Is(err, errStop) {
			return err
		}
		if exists {
			return nil
		}
		id, err := tx.NextID(KindToken)
		if err != nil {
			return err
		}
		out = t
		out.ID, out.Created = id, db.stamp()
		created = true
		return put(tx, KindToken, Key(id), out)
	})
	return out, created, err
}
