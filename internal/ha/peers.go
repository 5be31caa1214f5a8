package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
)

// Riding out a whole-etcd outage (Options.PeerPort). A holder that cannot renew its
// lease cannot tell "etcd is down" from "I alone am cut off from it", and only the
// first is safe to ride out. The hosts tell each other: every 100 ms each one
// broadcasts on the frontend link whether it reaches etcd now. A holder whose lease
// is about to lapse keeps the addresses only while every host it heard in the last
// peerMemory said, within peerWindow, that it cannot reach etcd either, and nobody said
// it can; it lets go the moment one says it can, or falls silent. A host that could
// not reach etcd (or just started) does not campaign until it has reached it for
// CampaignGate without a break, saying so all along: a holder riding out the outage
// hears it and lets go long before. A holder that reaches etcd again renews its lease
// or, when it lapsed meanwhile (etcd was up but out of everyone's reach), claims the
// key again at once: the gate keeps every other host out of the way meanwhile.
const (
	peerEvery  = 100 * time.Millisecond
	peerWindow = 500 * time.Millisecond
	peerMemory = 30 * time.Second
	// peerRetry is how long a holder riding out an outage goes on trying to renew
	// once another host says it reaches etcd again (its own connection may lag
	// behind, TCP backing off while it was cut off): well inside that host's
	// CampaignGate, which started before it said so.
	peerRetry  = 500 * time.Millisecond
	probeEvery = 200 * time.Millisecond
	// CampaignGate is how long a host must have reached etcd without a break before
	// it campaigns.
	CampaignGate = 2 * time.Second
)

// DefaultPeerPort is the heartbeats' UDP port unless --frontend-peer-port says otherwise.
const DefaultPeerPort = 7948

// peerMsg is one heartbeat.
type peerMsg struct {
	Host    string `json:"host"`
	EtcdOK  bool   `json:"etcd_ok"`
	Holding bool   `json:"holding"`
	// Leaving: the host stops (after its drain); forget it rather than count its
	// silence against it.
	Leaving bool `json:"leaving,omitempty"`
}

type peerSeen struct {
	at          time.Time
	ok, holding bool
}

// peers sends and hears the heartbeats, and probes etcd.
type peers struct {
	host    string
	holding func() bool
	client  *clientv3.Client
	prefix  string // <prefix>c/frontend/
	log     *slog.Logger
	conn    *net.UDPConn
	dst     *net.UDPAddr

	okSince atomic.Int64 // unix nanoseconds since etcd answered without a break; 0: it does not
	started atomic.Int64 // unix nanoseconds since run started listening

	mu   sync.Mutex
	seen map[string]peerSeen
	// known: the other hosts registered as candidates (<prefix>c/frontend/candidates/)
	// at the last read of etcd; lastHolder: the holder key's value then (the last
	// one seen, kept while the key is absent).
	known      map[string]bool
	lastHolder string
	unheard    map[string]bool // known hosts said to be unheard, logged once
}

// newPeers binds the heartbeat socket on iface (broadcasts to 255.255.255.255:port).
func newPeers(iface string, port int, host string, holding func() bool, client *clientv3.Client, prefix string, log *slog.Logger) (*peers, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SOL_SOCKET, unix.SO_BROADCAST}, {unix.SOL_SOCKET, unix.SO_REUSEADDR}} {
				if e := unix.SetsockoptInt(int(fd), o[0], o[1], 1); e != nil && serr == nil {
					serr = e
				}
			}
			if e := unix.BindToDevice(int(fd), iface); e != nil && serr == nil {
				serr = e
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("--frontend-peer-port %d on %s: %w", port, iface, err)
	}
	return &peers{host: host, holding: holding, client: client, prefix: prefix, log: log, conn: pc.(*net.UDPConn),
		dst: &net.UDPAddr{IP: net.IPv4bcast, Port: port}, seen: map[string]peerSeen{}, unheard: map[string]bool{}}, nil
}

// run probes etcd, sends and hears heartbeats until ctx ends, then says it leaves.
func (p *peers) run(ctx context.Context) {
	defer func() {
		b, _ := json.Marshal(peerMsg{Host: p.host, Leaving: true})
		p.conn.WriteToUDP(b, p.dst)
		p.conn.Close()
	}()
	p.started.Store(time.Now().UnixNano())
	go p.probe(ctx)
	go p.listen()
	t := time.NewTicker(peerEvery)
	defer t.Stop()
	for {
		p.send()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// send broadcasts one heartbeat now; a holder that let go sends one at once, so that
// the next host need not wait for the next period to campaign.
func (p *peers) send() {
	b, _ := json.Marshal(peerMsg{Host: p.host, EtcdOK: p.okSince.Load() != 0, Holding: p.holding()})
	p.conn.WriteToUDP(b, p.dst)
}

// probe reads <prefix>c/frontend/ every probeEvery (a linearizable read: it needs
// etcd's leader, i.e. a quorum) and records whether etcd answers, the registered
// candidates and the holder.
func (p *peers) probe(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for i := 0; ; i++ {
		pctx, cancel := context.WithTimeout(ctx, 2*probeEvery)
		r, err := p.client.Get(pctx, p.prefix+"holder")
		var c *clientv3.GetResponse
		if err == nil {
			c, err = p.client.Get(pctx, p.prefix+"candidates/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		}
		cancel()
		switch {
		case err != nil:
			p.okSince.Store(0)
		case p.okSince.Load() == 0:
			p.okSince.Store(time.Now().UnixNano())
		}
		if err == nil {
			known := map[string]bool{}
			for _, kv := range c.Kvs {
				if id := strings.TrimPrefix(string(kv.Key), p.prefix+"candidates/"); id != p.host {
					known[id] = true
				}
			}
			p.mu.Lock()
			p.known = known
			if len(r.Kvs) == 1 {
				p.lastHolder = string(r.Kvs[0].Value)
			}
			p.mu.Unlock()
		}
		if i%25 == 0 { // every 5 s
			p.warnUnheard()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *peers) listen() {
	buf := make([]byte, 512)
	for {
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		var m peerMsg
		if json.Unmarshal(buf[:n], &m) != nil || m.Host == "" || m.Host == p.host {
			continue
		}
		p.mu.Lock()
		if m.Leaving {
			delete(p.seen, m.Host)
		} else {
			p.seen[m.Host] = peerSeen{at: time.Now(), ok: m.EtcdOK, holding: m.Holding}
		}
		p.mu.Unlock()
	}
}

// warnUnheard logs, once each, the registered hosts whose heartbeats are not heard:
// their holder could not ride out an outage (the port blocked on the link, say).
func (p *peers) warnUnheard() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.known {
		s, ok := p.seen[id]
		switch {
		case ok && now.Sub(s.at) <= peerWindow:
			delete(p.unheard, id)
		case !p.unheard[id]:
			p.unheard[id] = true
			p.log.Warn("no heartbeats heard from a host of the cluster: an etcd outage will take the frontend addresses away (is --frontend-peer-port open on the frontend link?)", "host", id)
		}
	}
}

// gateOpen reports whether this host may campaign: it reaches etcd, and either has
// for CampaignGate without a break, or, having listened for peerWindow at least, it
// heard the last holder it saw in etcd say, within peerWindow, that it no longer
// holds the addresses, and no host heard lately says it does (a handover, a
// restart: no holder is riding out an outage).
func (p *peers) gateOpen() bool {
	s := p.okSince.Load()
	if s == 0 {
		return false
	}
	if time.Since(time.Unix(0, s)) >= CampaignGate {
		return true
	}
	// Hearing nobody says nothing until every host had time to be heard.
	if st := p.started.Load(); st == 0 || time.Since(time.Unix(0, st)) < peerWindow {
		return false
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastHolder == "" {
		return false
	}
	if p.lastHolder != p.host { // this host's own key is from a process gone
		if s, ok := p.seen[p.lastHolder]; !ok || now.Sub(s.at) > peerWindow || s.holding {
			return false
		}
	}
	for _, seen := range p.seen {
		if age := now.Sub(seen.at); age <= peerMemory && (age > peerWindow || seen.holding) {
			return false
		}
	}
	return true
}

// allCut reports whether every host registered as a candidate, and every host heard
// within peerMemory, said within peerWindow that it cannot reach etcd, and none said
// it can; why names the first that did not, and silent says whether it is one not
// heard (rather than one reaching etcd).
func (p *peers) allCut() (cut, silent bool, why string) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for h := range p.known {
		if s, ok := p.seen[h]; !ok || now.Sub(s.at) > peerWindow {
			return false, true, "host " + h + " is not heard"
		}
	}
	for h, s := range p.seen {
		age := now.Sub(s.at)
		switch {
		case age > peerMemory:
			delete(p.seen, h) // gone long ago: forgotten
		case age > peerWindow:
			return false, true, "host " + h + " fell silent"
		case s.ok:
			return false, false, "host " + h + " reaches etcd"
		}
	}
	return true, false, ""
}

// heard is how many hosts were heard within peerMemory.
func (p *peers) heard() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen)
}

// candidateTTL is the lease of a host's candidate registration: a host that died
// stays registered this long, and meanwhile a holder will not ride out an outage.
const candidateTTL = 10

// register keeps <prefix>c/frontend/candidates/<host id> in etcd while ctx lasts:
// the hosts a holder must hear before it rides out an outage (allCut), so that one
// whose heartbeats do not arrive counts, rather than goes unnoticed. It is removed
// when ctx ends.
func (h *Holder) register(ctx context.Context) {
	key := h.o.Prefix + "c/frontend/candidates/" + h.o.HostID
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, h.o.TTL)
		g, err := h.o.Client.Grant(gctx, candidateTTL)
		if err == nil {
			if _, err = h.o.Client.Put(gctx, key, h.o.HostID, clientv3.WithLease(g.ID)); err != nil {
				h.revoke(g.ID)
			}
		}
		cancel()
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		ka, err := h.o.Client.KeepAlive(ctx, g.ID)
		if err == nil {
			for range ka { // until ctx ends or the lease is lost
			}
		}
		if ctx.Err() != nil {
			h.revoke(g.ID)
			return
		}
	}
}
