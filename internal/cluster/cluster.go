// Package cluster ties together the hosts that share one etcd store: each host's
// membership and heartbeat under a lease, each host's view of its nodes' health, and
// the combined node status and host list that every host's API answers alike.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// DefaultTTL is how long a host that stopped heart-beating (killed, cut off) stays
// listed, and its node views counted.
const DefaultTTL = 5 * time.Second

// Options configure a Member.
type Options struct {
	// Client reaches the cluster's etcd.
	Client *clientv3.Client
	// Prefix is the store's key prefix; cluster keys live under <prefix>c/hosts/
	// and <prefix>c/views/, apart from the store's.
	Prefix string
	// HostID names this host; unique in the cluster.
	HostID string
	// Version is this host's nodebalancer version, shown by GET /cluster.
	Version string
	// API is this host's API address, shown by GET /cluster.
	API string
	// Applied returns the store revision this host's data plane has applied.
	Applied func() uint64
	// Views returns this host's current status of every node it checks.
	Views func() map[int]model.NodeStatus
	// TTL is the lease of this host's keys (DefaultTTL when zero).
	TTL time.Duration
	// Every is how often the heartbeat and the views are written (1 s when zero).
	Every time.Duration
	// Log receives membership events.
	Log *slog.Logger
}

// Host is one host as GET /cluster lists it.
type Host struct {
	ID      string    `json:"id"`
	Version string    `json:"version"`
	API     string    `json:"api"`
	Started time.Time `json:"started"`
	// Heartbeat is when the host last wrote its record (its own clock).
	Heartbeat time.Time `json:"heartbeat"`
	// HeartbeatAge is how long ago that was, by the answering host's clock.
	HeartbeatAge float64 `json:"heartbeat_age_seconds"`
	// Applied is the store revision the host's data plane has applied.
	Applied uint64 `json:"applied_revision"`
	// Self marks the host that answered.
	Self bool `json:"self"`
}

// Member is this host's membership of the cluster.
type Member struct {
	o       Options
	lease   clientv3.LeaseID
	started time.Time

	mu        sync.RWMutex
	hosts     map[string]bool                     // live hosts, by id
	views     map[int]map[string]model.NodeStatus // node id → host id → status
	published map[int]model.NodeStatus            // what this host last wrote

	problem atomic.Pointer[string] // why the last heartbeat failed; nil when it did not
}

// Problem is why this host's last heartbeat failed, "" when it succeeded.
func (m *Member) Problem() string {
	if p := m.problem.Load(); p != nil {
		return *p
	}
	return ""
}

// ErrDuplicateHost is returned by Join when another live host holds the id.
var ErrDuplicateHost = errors.New("host id already in use")

// The cluster's own keys, all under <prefix>c/ so that one watch follows them.
func (o *Options) base() string             { return o.Prefix + "c/" }
func (o *Options) hostKey(id string) string { return o.base() + "hosts/" + id }

// viewKey is <prefix>c/views/<node id>/<host id>.
func (o *Options) viewKey(node int, host string) string {
	return o.base() + "views/" + strconv.Itoa(node) + "/" + host
}

// Join claims this host's id under a new lease. When the id is held (by a live
// host, or by this host's previous run killed less than a TTL ago) it waits up to
// one TTL for the holder's lease to lapse, then fails with ErrDuplicateHost.
func Join(ctx context.Context, o Options) (*Member, error) {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.HostID == "" || strings.ContainsAny(o.HostID, "/ ") {
		return nil, fmt.Errorf("host id %q: must be non-empty, without '/' or spaces", o.HostID)
	}
	m := &Member{o: o, started: time.Now().UTC(), hosts: map[string]bool{},
		views: map[int]map[string]model.NodeStatus{}, published: map[int]model.NodeStatus{}}
	tctx, cancel := context.WithTimeout(ctx, 2*o.TTL+5*time.Second)
	defer cancel()
	lease, err := o.Client.Grant(tctx, int64(o.TTL/time.Second)+1)
	if err != nil {
		return nil, fmt.Errorf("etcd lease: %w", err)
	}
	m.lease = lease.ID
	key := o.hostKey(o.HostID)
	deadline := time.Now().Add(o.TTL + 2*time.Second)
	for {
		// Keep the new lease alive while waiting: the old holder's may outlast it
		// (a snapshot restored into etcd brings every host's lease back with a full
		// TTL), and a claim under a lapsed lease fails with "lease not found".
		if _, err := o.Client.KeepAliveOnce(tctx, m.lease); err != nil {
			return nil, fmt.Errorf("claim host id %s: keep the lease: %w", o.HostID, err)
		}
		r, err := o.Client.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(m.record()), clientv3.WithLease(m.lease))).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return nil, fmt.Errorf("claim host id %s: %w", o.HostID, err)
		}
		if r.Succeeded {
			return m, nil
		}
		if time.Now().After(deadline) {
			var h Host
			if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
				_ = json.Unmarshal(kvs[0].Value, &h)
			}
			o.Client.Revoke(context.Background(), m.lease)
			return nil, fmt.Errorf("%w: %q is held by a live host (API %s, started %s, heartbeat %s); give each host its own --host-id",
				ErrDuplicateHost, o.HostID, h.API, h.Started.Format(time.RFC3339), h.Heartbeat.Format(time.RFC3339))
		}
		select {
		case <-tctx.Done():
			return nil, tctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// record is this host's entry in <prefix>c/hosts/.
func (m *Member) record() []byte {
	h := Host{ID: m.o.HostID, Version: m.o.Version, API: m.o.API, Started: m.started, Heartbeat: time.Now().UTC()}
	if m.o.Applied != nil {
		h.Applied = m.o.Applied()
	}
	b, _ := json.Marshal(h)
	return b
}

// Run keeps the lease alive, heart-beats and publishes this host's node views every
// Options.Every, and follows the other hosts' views, until ctx ends; then it
// revokes the lease, so the others stop counting this host at once. An etcd that
// cannot be reached is retried; a lease that lapsed meanwhile is taken anew.
func (m *Member) Run(ctx context.Context) error {
	go m.follow(ctx)
	tick := time.NewTicker(m.o.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m.o.Client.Revoke(rctx, m.lease)
			cancel()
			return nil
		case <-tick.C:
		}
		if err := m.beat(ctx); err != nil && ctx.Err() == nil {
			if m.Problem() == "" {
				m.o.Log.Warn("cluster heartbeat failed", "host", m.o.HostID, "err", err)
			}
			p := err.Error()
			m.problem.Store(&p)
		} else if err == nil && m.problem.Load() != nil {
			m.o.Log.Info("cluster heartbeat back", "host", m.o.HostID)
			m.problem.Store(nil)
		}
	}
}

// beat refreshes the lease and the host record and writes the node views that
// changed.
func (m *Member) beat(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, m.o.Every+m.o.TTL/2)
	defer cancel()
	if _, err := m.o.Client.KeepAliveOnce(cctx, m.lease); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			// The lease lapsed (etcd was out of reach longer than the TTL): take a
			// new one; every key is written again under it.
			l, gerr := m.o.Client.Grant(cctx, int64(m.o.TTL/time.Second)+1)
			if gerr != nil {
				return errors.Join(err, gerr)
			}
			m.o.Log.Warn("cluster lease lapsed; joined again", "host", m.o.HostID)
			m.lease = l.ID
			m.mu.Lock()
			m.published = map[int]model.NodeStatus{}
			m.mu.Unlock()
		} else {
			return err
		}
	}
	if _, err := m.o.Client.Put(cctx, m.o.hostKey(m.o.HostID), string(m.record()), clientv3.WithLease(m.lease)); err != nil {
		return err
	}
	return m.publish(cctx)
}

// maxOps stays under etcd's default --max-txn-ops (128).
const maxOps = 100

// publish writes this host's views that changed since the last publish, and
// deletes those of nodes that are gone.
func (m *Member) publish(ctx context.Context) error {
	if m.o.Views == nil {
		return nil
	}
	cur := m.o.Views()
	m.mu.RLock()
	var ops []clientv3.Op
	for id, st := range cur {
		if m.published[id] != st {
			ops = append(ops, clientv3.OpPut(m.o.viewKey(id, m.o.HostID), string(st), clientv3.WithLease(m.lease)))
		}
	}
	for id := range m.published {
		if _, ok := cur[id]; !ok {
			ops = append(ops, clientv3.OpDelete(m.o.viewKey(id, m.o.HostID)))
		}
	}
	m.mu.RUnlock()
	for len(ops) > 0 {
		n := min(len(ops), maxOps)
		if _, err := m.o.Client.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return err
		}
		ops = ops[n:]
	}
	m.mu.Lock()
	m.published = cur
	m.mu.Unlock()
	return nil
}

// follow keeps the live hosts and every host's views current from etcd: a full
// read, then a watch from there; any break (etcd away, compaction) starts over.
func (m *Member) follow(ctx context.Context) {
	for ctx.Err() == nil {
		rev, err := m.load(ctx)
		if err == nil {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for resp := range m.o.Client.Watch(wctx, m.o.base(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
				if resp.Err() != nil {
					break
				}
				m.mu.Lock()
				for _, ev := range resp.Events {
					m.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
				}
				m.mu.Unlock()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// load reads every host and view and returns the revision it read at.
func (m *Member) load(ctx context.Context) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	hosts, err := m.o.Client.Get(cctx, m.o.base()+"hosts/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	views, err := m.o.Client.Get(cctx, m.o.base()+"views/", clientv3.WithPrefix(), clientv3.WithRev(hosts.Header.Revision))
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hosts, m.views = map[string]bool{}, map[int]map[string]model.NodeStatus{}
	for _, kv := range append(hosts.Kvs, views.Kvs...) {
		m.apply(string(kv.Key), kv.Value, false)
	}
	return hosts.Header.Revision, nil
}

// apply records one key of <prefix>c/hosts/ or <prefix>c/views/; m.mu is held.
func (m *Member) apply(key string, value []byte, deleted bool) {
	rest, ok := strings.CutPrefix(key, m.o.base())
	if !ok {
		return
	}
	if id, ok := strings.CutPrefix(rest, "hosts/"); ok {
		if deleted {
			delete(m.hosts, id)
		} else {
			m.hosts[id] = true
		}
		return
	}
	v, ok := strings.CutPrefix(rest, "views/")
	if !ok {
		return
	}
	nodeS, host, ok := strings.Cut(v, "/")
	node, err := strconv.Atoi(nodeS)
	if !ok || err != nil {
		return
	}
	if deleted {
		delete(m.views[node], host)
		if len(m.views[node]) == 0 {
			delete(m.views, node)
		}
		return
	}
	if m.views[node] == nil {
		m.views[node] = map[string]model.NodeStatus{}
	}
	m.views[node][host] = model.NodeStatus(value)
}

// Status is node id's status as the cluster sees it, the same on every host: among
// the live hosts that published a view of the node, UP when more than half see it UP,
// DOWN otherwise (a tie is DOWN). A node no host has published a view of yet takes
// own, this host's view.
func (m *Member) Status(id int, own model.NodeStatus) model.NodeStatus {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return combine(m.views[id], m.hosts, own)
}

// combine applies Status's rule; pure, for its table test.
func combine(views map[string]model.NodeStatus, live map[string]bool, own model.NodeStatus) model.NodeStatus {
	up, seen := 0, 0
	for host, st := range views {
		if !live[host] {
			continue
		}
		seen++
		if st == model.StatusUp {
			up++
		}
	}
	if seen == 0 {
		return own
	}
	if 2*up > seen {
		return model.StatusUp
	}
	return model.StatusDown
}

// Hosts lists the live hosts, read linearizably from etcd, in id order.
func (m *Member) Hosts(ctx context.Context) ([]Host, error) {
	r, err := m.o.Client.Get(ctx, m.o.base()+"hosts/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]Host, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		var h Host
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			continue
		}
		h.HeartbeatAge = max(0, now.Sub(h.Heartbeat).Seconds())
		h.Self = h.ID == m.o.HostID
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Host) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// LiveHosts returns the ids of the hosts this host currently sees alive.
func (m *Member) LiveHosts() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Sorted(maps.Keys(m.hosts))
}

// SetAPI sets the API address the heartbeat shows (the bound one, when the flag
// asked for port 0). Call it before Run.
func (m *Member) SetAPI(addr string) { m.o.API = addr }

// HostID is this host's id.
func (m *Member) HostID() string { return m.o.HostID }
