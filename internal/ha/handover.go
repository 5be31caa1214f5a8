package ha

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
)

// A stop hands the addresses over without cutting the connections open on them
// (Options.Handover). The stopping holder, its own announcements of the addresses
// over (hold ends them first: one sent after the next holder's would point the
// clients back here), then:
//
//  1. publishes <prefix>c/frontend/draining/<host id>, under a lease of its own kept
//     alive while it drains: its addresses, and its own addresses on the frontend
//     link, where the next holder is to send their packets;
//  2. moves the addresses from the frontend interface to lo, where they stay local
//     (its sockets go on receiving) but are not answered for on the link
//     (arp_ignore 1; IPv6 answers only for the interface's own addresses anyway);
//  3. revokes its holder lease: the next holder takes over at once;
//  4. goes on serving as before for Settle, listeners open: a client whose
//     connection was made just before the handover sends its request after it,
//     and one that has not heard the next holder's announcement yet connects here;
//  5. then drops the SYNs still arriving for the addresses (they are retransmitted
//     and reach the next holder; a closed listener would answer with a reset), and
//     Run returns: the data plane closes its listeners and drains.
//
// The next holder reads the drain records before it adds the addresses, and
// forwards to the newest draining host every packet for a drained address that is
// not a SYN and that belongs to no connection of its own (forward.go). When the
// stopping host's connections are done (Server calls EndDrain once its data plane
// closed, within --shutdown-grace) it revokes the drain lease, and removes the
// addresses from lo and its table; the next holder sees the record go and removes
// its rules. A draining host that is killed stops renewing its lease, and the
// record goes after TTL all the same. A draining host keeps forwarding to the drains
// older than its own (two handovers in a row: C sends to B, B on to A).

// Settle is how long a host that handed the addresses over goes on accepting
// connections and requests as before: the next holder's three announcements, 200 ms
// apart, are out by then.
const Settle = time.Second

// drainState is this host's drain after a handover.
type drainState struct {
	lease      clientv3.LeaseID
	stopKeep   context.CancelFunc
	stopFollow context.CancelFunc
	addrs      []netip.Addr
}

func (h *Holder) drainPrefix() string { return h.o.Prefix + "c/frontend/draining/" }

// handOver does steps 1 and 2 above with the addresses held (the caller revokes the
// holder lease after). It returns false, having changed nothing, when the record
// cannot be published: the caller then releases as without forwarding.
func (h *Holder) handOver(stopFollow context.CancelFunc) bool {
	addrs := slices.Clone(h.held)
	if len(addrs) == 0 {
		return false
	}
	rec := drainRecord{Host: h.o.HostID}
	for _, a := range addrs {
		rec.Addrs = append(rec.Addrs, a.String())
	}
	rec.V4, rec.V6 = linkAddrs(h.link, h.o.Pool)
	b, err := json.Marshal(rec)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	g, err := h.o.Client.Grant(ctx, int64((h.o.TTL+time.Second-1)/time.Second))
	if err != nil {
		h.o.Log.Warn("handover: drain record not published; releasing without forwarding", "err", err)
		return false
	}
	pr, err := h.o.Client.Put(ctx, h.drainPrefix()+h.o.HostID, string(b), clientv3.WithLease(g.ID))
	if err != nil {
		h.revoke(g.ID)
		h.o.Log.Warn("handover: drain record not published; releasing without forwarding", "err", err)
		return false
	}
	// From now on, forward only to drains older than this one.
	if err := h.fwd.setBefore(pr.Header.Revision); err != nil {
		h.o.Log.Error("handover forwarding", "err", err)
	}
	kctx, stopKeep := context.WithCancel(context.Background())
	if ka, err := h.o.Client.KeepAlive(kctx, g.ID); err == nil {
		go func() {
			for range ka { // the client renews; the answers need reading
			}
		}()
	}
	for _, a := range addrs {
		if err := netlink.AddrAdd(h.lo, addrOf(a)); err != nil && !errors.Is(err, unix.EEXIST) {
			h.o.Log.Error("handover: add the address to lo", "addr", a.String(), "err", err)
		}
	}
	h.releaseAll()
	h.drainMu.Lock()
	h.drain = &drainState{lease: g.ID, stopKeep: stopKeep, stopFollow: stopFollow, addrs: addrs}
	h.drainMu.Unlock()
	h.o.Log.Info("handing the frontend addresses over", "addrs", rec.Addrs, "forward_to_v4", rec.V4, "forward_to_v6", rec.V6)
	return true
}

// settle is step 4 and 5 above, after a handover (nothing otherwise).
func (h *Holder) settle() {
	h.drainMu.Lock()
	d := h.drain
	h.drainMu.Unlock()
	if d == nil {
		return
	}
	time.Sleep(Settle)
	if err := h.fwd.setOwn(d.addrs); err != nil {
		h.o.Log.Error("handover: drop new connections' SYNs", "err", err)
	}
}

// EndDrain ends this host's drain after a handover, once its connections are done
// (or their grace is over): the next holder stops forwarding, and the addresses
// leave lo. Without a handover it does nothing.
func (h *Holder) EndDrain() {
	h.drainMu.Lock()
	d := h.drain
	h.drain = nil
	h.drainMu.Unlock()
	if d == nil {
		return
	}
	d.stopKeep()
	h.revoke(d.lease) // the record goes with it
	// The addresses first: while they are local, the rules must stay, or a late
	// SYN would meet no listener and be refused, and a packet this host forwards on
	// to an older drain would meet no socket and be reset.
	for _, a := range d.addrs {
		if err := netlink.AddrDel(h.lo, addrOf(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			h.o.Log.Error("remove a drained address from lo", "addr", a.String(), "err", err)
		}
	}
	d.stopFollow()
	if err := h.fwd.clear(); err != nil {
		h.o.Log.Error("remove handover rules", "err", err)
	}
	h.o.Log.Info("drain over: handover rules and addresses removed")
}

// followDrains keeps the forwarder's targets in step with the drain records until
// ctx ends: once before it returns (so that the rules are in before the addresses
// arrive), then on every change. stop bounds the first read.
func (h *Holder) followDrains(stop, ctx context.Context) {
	rctx, cancel := context.WithTimeout(stop, h.o.TTL)
	rev := h.loadDrains(rctx)
	cancel()
	go func() {
		for ctx.Err() == nil {
			if rev == 0 {
				sleep(ctx, h.o.Renew)
				rev = h.loadDrains(ctx)
				continue
			}
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for wr := range h.o.Client.Watch(wctx, h.drainPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
				if wr.Err() != nil {
					break
				}
				if len(wr.Events) > 0 {
					h.loadDrains(ctx)
				}
			}
			cancel()
			rev = 0
		}
		h.fwd.setTargets(nil)
	}()
}

// loadDrains reads the drain records and hands the other hosts' ones, newest first,
// to the forwarder. It returns the revision read, 0 when it could not read.
func (h *Holder) loadDrains(ctx context.Context) int64 {
	gctx, cancel := context.WithTimeout(ctx, h.o.TTL)
	r, err := h.o.Client.Get(gctx, h.drainPrefix(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return 0
	}
	var recs []drainRecord
	for _, kv := range r.Kvs {
		var rec drainRecord
		if json.Unmarshal(kv.Value, &rec) != nil || rec.Host == h.o.HostID {
			continue
		}
		rec.rev = kv.CreateRevision
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b drainRecord) int { return int(b.rev - a.rev) })
	if err := h.fwd.setTargets(recs); err != nil {
		h.o.Log.Error("handover forwarding", "err", err)
	}
	return r.Header.Revision
}

// linkAddrs is where another host of the link reaches this one: its first IPv4
// address on link outside the frontend pool, and its first usable IPv6 one outside
// the pool (a global or ULA one, else the link-local one; never one still in
// duplicate address detection, which would not answer neighbour solicitations).
func linkAddrs(link netlink.Link, pool []netip.Prefix) (v4, v6 string) {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return "", ""
	}
	ll := ""
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || inPool(pool, ip.Unmap()) || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.Is4():
			if v4 == "" {
				v4 = ip.String()
			}
		case ip.IsLinkLocalUnicast():
			if ll == "" {
				ll = ip.String()
			}
		case ip.IsGlobalUnicast() && v6 == "":
			v6 = ip.String()
		}
	}
	if v6 == "" {
		v6 = ll
	}
	return v4, v6
}

// targetsOf is where recs' packets go, for the log.
func targetsOf(recs []drainRecord) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Host+"="+r.V4+","+r.V6)
	}
	return strings.Join(s, " ")
}

// hostsOf names the hosts of recs, for the log.
func hostsOf(recs []drainRecord) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Host)
	}
	return strings.Join(s, ",")
}
