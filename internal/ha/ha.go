// Package ha decides, through etcd, which host of a cluster holds the NodeBalancers'
// frontend addresses, and makes the holder hold them: it adds them to the frontend
// interface (netlink) and announces them (gratuitous ARP, unsolicited neighbour
// advertisements). One host holds every address; the others listen on them already
// (IP_FREEBIND) and take over when the holder's lease lapses or it resigns.
//
// The holder is whoever owns the key <prefix>c/frontend/holder, created only when
// absent, under a lease of TTL. Holding ends three ways: the process stops (the
// addresses are removed, then the lease revoked, so another host takes over at once);
// the lease cannot be renewed in time (the addresses are removed Margin before the
// lease could lapse in etcd, so that two hosts never hold them at once); or the process
// dies (its lease lapses after TTL and another host takes over).
package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
)

// Defaults of Options.
const (
	DefaultTTL    = 2 * time.Second
	DefaultRenew  = 300 * time.Millisecond
	DefaultMargin = 500 * time.Millisecond
)

// Options configure a Holder.
type Options struct {
	// Client reaches the cluster's etcd; Prefix is the store's key prefix.
	Client *clientv3.Client
	Prefix string
	// HostID names this host (the holder key's value).
	HostID string
	// Interface is where the addresses go (--frontend-interface).
	Interface string
	// Pool is every range frontend addresses come from: addresses in it found on the
	// interface at start were left by a previous run that was killed, and are removed.
	Pool []netip.Prefix
	// Addresses returns the frontend addresses to hold now.
	Addresses func() []netip.Addr
	// Ready reports whether this host's listeners are bound; it does not run for
	// the addresses before.
	Ready func() bool
	// TTL is the holder lease (DefaultTTL); etcd rounds it up to whole seconds.
	TTL time.Duration
	// Renew is how often the lease is renewed while holding (DefaultRenew).
	Renew time.Duration
	// Margin is how long before the lease could lapse in etcd a holder that could
	// not renew it gives the addresses up (DefaultMargin).
	Margin time.Duration
	// Log receives ownership events.
	Log *slog.Logger
	// Handover turns on connection forwarding at a stop (handover.go): the stopping
	// holder keeps its connections, and the next holder sends their packets to it.
	// It needs nftables and two ARP sysctls on Interface (New checks, and hands
	// over without forwarding, as before, when they cannot be had).
	Handover bool
	// PeerPort, when not 0, is the UDP port of the hosts' heartbeats on Interface
	// (peers.go): a holder rides out an etcd outage that every host sees.
	PeerPort int
}

// Holder runs this host's part in address ownership.
type Holder struct {
	o       Options
	link    netlink.Link
	lo      netlink.Link
	fwd     *forwarder // nil without Options.Handover
	peers   *peers     // nil without Options.PeerPort
	drainMu sync.Mutex
	drain   *drainState // set while this host drains after a handover
	holding atomic.Bool
	held    []netip.Addr        // addresses this host added; only Run's goroutine touches it
	failing map[netip.Addr]bool // addresses that could not be added, logged once
	// The announcements of the addresses sync added (announce.go): they run only
	// while this host holds, under announceCtx, which hold sets and ends with the
	// holding, and hold waits for them before it gives the addresses up. Only Run's
	// goroutine touches announceCtx.
	announceCtx context.Context
	announcing  sync.WaitGroup
}

// New checks the interface and removes pool addresses a killed previous run left on it.
func New(o Options) (*Holder, error) {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Renew <= 0 {
		o.Renew = DefaultRenew
	}
	if o.Margin <= 0 {
		o.Margin = DefaultMargin
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Margin+o.Renew >= o.TTL {
		return nil, fmt.Errorf("frontend lease %s: must be longer than renew %s + margin %s", o.TTL, o.Renew, o.Margin)
	}
	link, err := netlink.LinkByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("--frontend-interface %s: %w", o.Interface, err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("interface lo: %w", err)
	}
	if _, err := removeStale(link, lo, o.Pool, o.Log); err != nil {
		return nil, fmt.Errorf("--frontend-interface %s: %w", o.Interface, err)
	}
	h := &Holder{o: o, link: link, lo: lo, failing: map[netip.Addr]bool{}}
	if o.PeerPort != 0 {
		if h.peers, err = newPeers(o.Interface, o.PeerPort, o.HostID, h.Holding, o.Client, o.Prefix+"c/frontend/", o.Log); err != nil {
			return nil, err
		}
	}
	if o.Handover {
		if err := arpSysctls(o.Interface, o.Log); err != nil {
			o.Log.Warn("connection forwarding at a handover is off: connections open at a stop may be reset", "err", err)
		} else {
			h.fwd = &forwarder{iface: o.Interface, ifindex: uint32(link.Attrs().Index), log: o.Log}
		}
	}
	return h, nil
}

// RemoveStale removes from iface and from lo every host address (/32, /128) inside
// pool, and the handover's nftables table: what a run that was killed left behind
// (on lo: while it drained after a handover). It returns how many addresses it
// removed. `nodebalancer frontend-release` runs it after the service stops
// (systemd's ExecStopPost), so a killed holder does not keep answering ARP for them.
func RemoveStale(iface string, pool []netip.Prefix, log *slog.Logger) (int, error) {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return 0, fmt.Errorf("interface %s: %w", iface, err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return 0, fmt.Errorf("interface lo: %w", err)
	}
	return removeStale(link, lo, pool, log)
}

func removeStale(link, lo netlink.Link, pool []netip.Prefix, log *slog.Logger) (int, error) {
	n := 0
	for _, l := range []netlink.Link{link, lo} {
		m, err := removeStaleFrom(l, pool, log)
		n += m
		if err != nil {
			return n, err
		}
	}
	if err := removeTable(); err != nil {
		// Without nf_tables in the kernel there is no table to remove either.
		log.Debug("handover table not removed", "err", err)
	}
	return n, nil
}

func removeStaleFrom(link netlink.Link, pool []netip.Prefix, log *slog.Logger) (int, error) {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	n := 0
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil || !isHostMask(a.IPNet.Mask) || !inPool(pool, ip.Unmap()) {
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return n, fmt.Errorf("remove stale %s: %w", ip.Unmap(), err)
		}
		n++
		log.Warn("removed a frontend address a previous run left", "addr", ip.Unmap().String(), "interface", link.Attrs().Name)
	}
	return n, nil
}

func inPool(pool []netip.Prefix, a netip.Addr) bool {
	for _, p := range pool {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func isHostMask(m net.IPMask) bool {
	ones, bits := m.Size()
	return ones == bits && bits > 0
}

// Holding reports whether this host holds the addresses now.
func (h *Holder) Holding() bool { return h.holding.Load() }

// Current is the id of the host holding the frontend addresses now, "" when none.
func (h *Holder) Current(ctx context.Context) (string, error) {
	r, err := h.o.Client.Get(ctx, h.key())
	if err != nil || len(r.Kvs) == 0 {
		return "", err
	}
	return string(r.Kvs[0].Value), nil
}

func (h *Holder) key() string { return h.o.Prefix + "c/frontend/holder" }

// Run takes part in the election until ctx ends. When it ends while holding, the
// addresses are removed first and the lease revoked after, so that the next holder
// takes over at once; Run returns when that is done (with Options.Handover, Settle
// later: handover.go).
func (h *Holder) Run(ctx context.Context) error {
	if h.peers != nil {
		// Heartbeats go on until Run returns: the handover's last one says this
		// host no longer holds, which opens the next holder's gate.
		pctx, stopPeers := context.WithCancel(context.Background())
		done := make(chan struct{})
		registered := make(chan struct{})
		go func() { h.peers.run(pctx); close(done) }()
		go func() { h.register(pctx); close(registered) }()
		defer func() { stopPeers(); <-done; <-registered }()
	}
	lastErr := ""
	for ctx.Err() == nil {
		if h.o.Ready != nil && !h.o.Ready() {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		if h.peers != nil && !h.peers.gateOpen() {
			// Not yet CampaignGate of etcd without a break: a holder riding out
			// an outage must hear this host first (peers.go).
			sleep(ctx, peerEvery)
			continue
		}
		lease, safe, err := h.campaign(ctx)
		if err != nil {
			if ctx.Err() == nil {
				if msg := err.Error(); msg != lastErr { // retried every second: say each new reason once
					h.o.Log.Warn("frontend election (retrying)", "err", err)
					lastErr = msg
				}
				sleep(ctx, time.Second)
			}
			continue
		}
		lastErr = ""
		h.hold(ctx, lease, safe)
	}
	h.settle()
	return nil
}

// campaign waits until this host owns the holder key and returns its lease and the
// time until which the lease is sure to be alive in etcd.
func (h *Holder) campaign(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	c := h.o.Client
	for {
		for h.peers != nil && !h.peers.gateOpen() { // peers.go
			if ctx.Err() != nil {
				return 0, time.Time{}, ctx.Err()
			}
			sleep(ctx, peerEvery)
		}
		sent := time.Now()
		gctx, cancel := context.WithTimeout(ctx, h.o.TTL)
		g, err := c.Grant(gctx, int64((h.o.TTL+time.Second-1)/time.Second))
		cancel()
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("lease: %w", err)
		}
		tctx, cancel := context.WithTimeout(ctx, h.o.TTL)
		r, err := c.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(h.key()), "=", 0)).
			Then(clientv3.OpPut(h.key(), h.o.HostID, clientv3.WithLease(g.ID))).
			Else(clientv3.OpGet(h.key())).Commit()
		cancel()
		if err != nil {
			h.revoke(g.ID)
			return 0, time.Time{}, fmt.Errorf("claim: %w", err)
		}
		if r.Succeeded {
			return g.ID, sent.Add(time.Duration(g.TTL) * time.Second), nil
		}
		h.revoke(g.ID) // not needed while another host holds: waiting costs no lease
		rev := r.Header.Revision
		if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 && string(kvs[0].Value) == h.o.HostID {
			// Our own key from before a restart or a give-up: wait for its lease.
			h.o.Log.Info("frontend holder key still ours from before; waiting for its lease to lapse")
		}
		if err := h.waitGone(ctx, rev); err != nil {
			return 0, time.Time{}, err
		}
	}
}

// waitGone returns when the holder key is deleted after revision rev (the holder
// resigned or its lease lapsed), or after a while, to look again.
func (h *Holder) waitGone(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 30*time.Second)
	defer cancel()
	for wr := range h.o.Client.Watch(wctx, h.key(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return nil
			}
		}
	}
	return ctx.Err()
}

func (h *Holder) revoke(id clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	h.o.Client.Revoke(rctx, id)
	cancel()
}

// hold holds the addresses while the lease is sure to be alive.
func (h *Holder) hold(ctx context.Context, lease clientv3.LeaseID, safe time.Time) {
	h.holding.Store(true)
	h.o.Log.Info("holding the frontend addresses", "interface", h.o.Interface, "lease_ttl", h.o.TTL.String())
	// The renewals and the key watch of one lease; a lease claimed again after an
	// etcd outage gets new ones (and new channels: the old ones' last words must not
	// count against the new lease).
	var renewed chan time.Time
	var lost chan error
	stopRenew := func() {}
	watch := func(lease clientv3.LeaseID, safe time.Time) {
		stopRenew()
		renewed, lost = make(chan time.Time, 1), make(chan error, 1)
		var rctx context.Context
		rctx, stopRenew = context.WithCancel(ctx)
		go h.renew(rctx, lease, safe, renewed, lost)
		go h.watchKey(rctx, lease, lost)
	}
	watch(lease, safe)
	defer func() { stopRenew() }()
	// The announcements end with the holding, before the addresses leave and the
	// lease goes: one still going out after the next holder's would point the
	// clients back here, and the packets of the next holder's connections would
	// meet a host that has no such socket (two handovers in a row, docs/ha.md).
	actx, stopAnnounce := context.WithCancel(context.Background())
	h.announceCtx = actx
	defer stopAnnounce()

	// Connections another host drains after handing the addresses over: their
	// packets are forwarded to it from before the addresses arrive here.
	stopFollow := func() {}
	if h.fwd != nil {
		var fctx context.Context
		fctx, stopFollow = context.WithCancel(context.Background())
		h.followDrains(ctx, fctx)
	}
	h.sync()
	giveUp := time.NewTimer(time.Until(safe) - h.o.Margin)
	defer giveUp.Stop()
	resync := time.NewTicker(500 * time.Millisecond)
	defer resync.Stop()
	// outage: the lease could not be renewed, and every other host says it cannot
	// reach etcd either (peers.go): the addresses stay while that lasts.
	outage, leaseGone := false, false
	var retrySince time.Time // when another host first said it reaches etcd again
	var check <-chan time.Time
	reason := ""
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "stopping"
		case s := <-renewed:
			giveUp.Reset(time.Until(s) - h.o.Margin)
			if outage {
				outage, check = false, nil
				h.o.Log.Warn("etcd reachable again: holding the frontend addresses under the same lease")
			}
		case err := <-lost:
			reason = "lease lost: " + err.Error()
			if outage && !errors.Is(err, errTaken) {
				// The lease lapsed in etcd while no host could reach it (etcd
				// up, out of everyone's reach). Every other host waits
				// CampaignGate after it reaches etcd again, saying so: until one
				// does, the key can only be this host's again. The check below
				// claims it as soon as etcd answers.
				reason, leaseGone = "", true
			}
		case <-giveUp.C:
			reason = "lease not renewed in time; giving the addresses up before it can lapse"
			if h.peers != nil {
				if cut, _, _ := h.peers.allCut(); cut {
					reason, outage, retrySince = "", true, time.Time{}
					t := time.NewTicker(peerEvery)
					defer t.Stop()
					check = t.C
					h.o.Log.Warn("etcd unreachable, and every other host says it cannot reach it either: keeping the frontend addresses", "hosts_heard", h.peers.heard())
				}
			}
		case <-check:
			cut, silent, why := h.peers.allCut()
			if leaseGone {
				l, sf, err := h.reclaim(ctx)
				if err == nil {
					lease, outage, check, leaseGone = l, false, nil, false
					watch(l, sf)
					giveUp.Reset(time.Until(sf) - h.o.Margin)
					h.o.Log.Warn("etcd reachable again: the lease had lapsed; claimed the frontend addresses again", "lease", fmt.Sprintf("%x", l))
					break
				}
				if errors.Is(err, errTaken) {
					reason = "etcd reachable again, and another host holds the key: giving the addresses up"
					break
				}
			}
			if cut {
				retrySince = time.Time{}
				break
			}
			// Before letting go: etcd may answer this host again too (the other
			// hosts' gate keeps them away meanwhile). One renewal, or, when the
			// lease turns out to have lapsed, one claim (above, from the next
			// check on), per check.
			if !leaseGone {
				sf, err := h.renewOnce(ctx, lease)
				if err == nil {
					giveUp.Reset(time.Until(sf) - h.o.Margin)
					outage, check = false, nil
					h.o.Log.Warn("etcd reachable again: holding the frontend addresses under the same lease")
					break
				}
				leaseGone = isLeaseGone(err)
			}
			if !silent {
				if retrySince.IsZero() {
					retrySince = time.Now()
				}
				if time.Since(retrySince) < peerRetry {
					break
				}
			}
			reason = "etcd unreachable from here, and " + why + ": giving the addresses up"
		case <-resync.C:
			h.sync()
		}
	}
	stopRenew()
	stopAnnounce()
	h.announcing.Wait()
	if reason == "stopping" && h.fwd != nil && h.handOver(stopFollow) {
		reason = "stopping; draining their connections here, the next holder forwards their packets"
	} else {
		h.releaseAll()
		stopFollow()
		if h.fwd != nil {
			if err := h.fwd.clear(); err != nil {
				h.o.Log.Error("remove handover forwarding", "err", err)
			}
		}
	}
	h.holding.Store(false)
	if h.peers != nil {
		h.peers.send() // before the revoke: the next holder's gate opens on it (peers.go)
	}
	h.o.Log.Warn("released the frontend addresses", "reason", reason)
	h.revoke(lease) // let the next holder take over at once; harmless when lapsed
}

// errTaken: the holder key is another host's.
var errTaken = errors.New("another host holds the key")

// renewOnce renews lease once, within one renewal period, and returns until when it
// is sure to be alive.
func (h *Holder) renewOnce(ctx context.Context, lease clientv3.LeaseID) (time.Time, error) {
	sent := time.Now()
	kctx, cancel := context.WithTimeout(ctx, h.o.Renew)
	defer cancel()
	r, err := h.o.Client.KeepAliveOnce(kctx, lease)
	if err != nil {
		return time.Time{}, err
	}
	if r.TTL <= 0 {
		return time.Time{}, rpctypes.ErrLeaseNotFound
	}
	return sent.Add(time.Duration(r.TTL) * time.Second), nil
}

// reclaim claims the holder key under a new lease when it is free (the old lease
// lapsed during an etcd outage), as campaign does, without waiting.
func (h *Holder) reclaim(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	sent := time.Now()
	cctx, cancel := context.WithTimeout(ctx, h.o.Renew)
	defer cancel()
	g, err := h.o.Client.Grant(cctx, int64((h.o.TTL+time.Second-1)/time.Second))
	if err != nil {
		return 0, time.Time{}, err
	}
	r, err := h.o.Client.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(h.key()), "=", 0)).
		Then(clientv3.OpPut(h.key(), h.o.HostID, clientv3.WithLease(g.ID))).Commit()
	if err != nil || !r.Succeeded {
		h.revoke(g.ID)
		if err == nil {
			err = errTaken
		}
		return 0, time.Time{}, err
	}
	return g.ID, sent.Add(time.Duration(g.TTL) * time.Second), nil
}

// watchKey reports on lost when the holder key stops being this lease's (deleted by
// hand, say): another host could create it while this one still holds.
func (h *Holder) watchKey(ctx context.Context, lease clientv3.LeaseID, lost chan<- error) {
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, h.o.TTL)
		r, err := h.o.Client.Get(gctx, h.key())
		cancel()
		if err != nil {
			sleep(ctx, h.o.Renew)
			continue // the renewals decide while etcd is away
		}
		if len(r.Kvs) == 0 || clientv3.LeaseID(r.Kvs[0].Lease) != lease {
			err := errors.New("the holder key was deleted")
			if len(r.Kvs) != 0 {
				err = fmt.Errorf("the holder key is no longer this host's: %w", errTaken)
			}
			select {
			case lost <- err:
			default:
			}
			return
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range h.o.Client.Watch(wctx, h.key(), clientv3.WithRev(r.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete || clientv3.LeaseID(ev.Kv.Lease) != lease {
					cancel()
					err := errors.New("the holder key was deleted")
					if ev.Type != clientv3.EventTypeDelete {
						err = fmt.Errorf("the holder key was written by another lease: %w", errTaken)
					}
					select {
					case lost <- err:
					default:
					}
					return
				}
			}
		}
		cancel()
	}
}

// renew renews the lease every Renew and reports until when it is sure to be alive
// (the time the renewal was sent plus its TTL: etcd counts from when it receives it).
func (h *Holder) renew(ctx context.Context, lease clientv3.LeaseID, safe time.Time, renewed chan time.Time, lost chan<- error) {
	t := time.NewTicker(h.o.Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		// Bounded by safe, so that a hung call cannot hold the decision back; once
		// safe is past (riding out an etcd outage), by one period.
		dl := safe
		if dl.Before(sent.Add(h.o.Renew)) {
			dl = sent.Add(h.o.Renew)
		}
		kctx, cancel := context.WithDeadline(ctx, dl)
		r, err := h.o.Client.KeepAliveOnce(kctx, lease)
		cancel()
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				continue // the give-up timer decides
			}
			if isLeaseGone(err) {
				select {
				case lost <- err:
				default:
				}
				return
			}
			continue
		}
		if r.TTL <= 0 {
			select {
			case lost <- rpctypes.ErrLeaseNotFound:
			default:
			}
			return
		}
		safe = sent.Add(time.Duration(r.TTL) * time.Second)
		select {
		case <-renewed:
		default:
		}
		renewed <- safe
	}
}

func isLeaseGone(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }

// sync makes the interface carry exactly the addresses to hold now, and announces
// the ones it added.
func (h *Holder) sync() {
	want := h.o.Addresses()
	slices.SortFunc(want, netip.Addr.Compare)
	want = slices.Compact(want)
	var added []netip.Addr
	for _, a := range want {
		if slices.Contains(h.held, a) {
			continue
		}
		if err := netlink.AddrAdd(h.link, addrOf(a)); err != nil && !errors.Is(err, unix.EEXIST) {
			if !h.failing[a] { // retried every 0.5 s: say it once
				h.o.Log.Error("add frontend address (retrying)", "addr", a.String(), "interface", h.o.Interface, "err", err)
				h.failing[a] = true
			}
			continue
		}
		delete(h.failing, a)
		h.held = append(h.held, a)
		added = append(added, a)
	}
	var keep []netip.Addr
	for _, a := range h.held {
		if slices.Contains(want, a) {
			keep = append(keep, a)
		} else {
			h.del(a)
		}
	}
	h.held = keep
	if len(added) > 0 {
		h.o.Log.Info("frontend addresses added", "addrs", fmt.Sprint(added), "interface", h.o.Interface)
		ctx := h.announceCtx
		h.announcing.Add(1)
		go func() {
			defer h.announcing.Done()
			announce(ctx, h.o.Interface, added, h.o.Log)
		}()
	}
}

func (h *Holder) releaseAll() {
	for _, a := range h.held {
		h.del(a)
	}
	h.held = nil
}

func (h *Holder) del(a netip.Addr) {
	if err := netlink.AddrDel(h.link, addrOf(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		h.o.Log.Error("remove frontend address", "addr", a.String(), "interface", h.o.Interface, "err", err)
	}
}

// addrOf is a as a host address (/32, /128); IPv6 ones skip duplicate address
// detection, which would keep them unusable for a second or more.
func addrOf(a netip.Addr) *netlink.Addr {
	bits := a.BitLen()
	n := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
	if a.Is6() {
		n.Flags = unix.IFA_F_NODAD
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
