package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/httpproxy"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// listener is the sockets of one config, one per address of its NodeBalancer (ipv4,
// and ipv6 when it has one): it accepts clients and hands each to the protocol's
// handler with the snapshot current at accept time.
type listener struct {
	plane    *Plane
	configID int
	addr     netip.AddrPort   // the first of addrs, for logs
	want     []netip.AddrPort // the addresses the config should listen on
	addrs    []netip.AddrPort // what lns are bound to, in the same order
	protocol model.Protocol
	lns      []*net.TCPListener
	snap     atomic.Pointer[snapshot]

	ctx    context.Context // ends when the listener retires: http connections finish their request and close
	cancel context.CancelFunc
	http   *httpproxy.Server      // http and https
	h2     *httpproxy.HTTP2Server // https clients that negotiated h2
	wg     sync.WaitGroup         // accept loop and every connection
	conns  connSet
	// eng serves the sockets of a tcp config, socks (lns are closed then); nil when
	// goroutines serve them.
	eng   *engine
	socks []*lsock
	// raw holds the listening sockets of a plain http config whose clients are
	// accepted raw (accept_linux.go; lns are closed then).
	raw       []*os.File
	rawClosed atomic.Bool // closeSockets closed raw: their accept loops end
}

// listen binds addr. Go sets SO_REUSEADDR on listeners, so a moved or re-created
// config may rebind a port whose old connections linger in TIME_WAIT. freebind lets it
// bind an address the host does not hold yet (Options.FreeBind).
func listen(addr netip.AddrPort, freebind bool) (*net.TCPListener, error) {
	lc := listenConfig(freebind)
	ln, err := lc.Listen(context.Background(), "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// listenAll binds the addresses of addrs: the first (the ipv4) must bind, or nothing
// is; a later one (the ipv6) that cannot bind is reported in skipped and left out, so
// that a host not yet set up for its IPv6 pool still serves IPv4.
func listenAll(addrs []netip.AddrPort, freebind bool) (lns []*net.TCPListener, bound []netip.AddrPort, skipped error, err error) {
	for i, a := range addrs {
		ln, e := listen(a, freebind)
		switch {
		case e != nil && i == 0:
			return nil, nil, nil, e
		case e != nil:
			skipped = errors.Join(skipped, e)
		default:
			lns, bound = append(lns, ln), append(bound, a)
		}
	}
	return lns, bound, skipped, nil
}

// closeSockets stops every socket of l accepting.
func (l *listener) closeSockets() {
	for _, ln := range l.lns {
		ln.Close()
	}
	l.rawClosed.Store(true)
	for _, f := range l.raw {
		f.Close()
	}
	for _, ls := range l.socks {
		l.eng.closeListener(ls)
	}
	l.socks = nil
}

// serve runs the accept loop of socket i until it is closed.
func (l *listener) serve(i int) {
	defer l.wg.Done()
	ln, local := l.lns[i], l.addrs[i]
	var delay time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.plane.log.Warn("accept failed", "config_id", l.configID, "addr", local.String(), "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s := l.snap.Load()
		if !l.firewall(s, c, local) {
			continue
		}
		if !l.admit(s, c) {
			continue
		}
		l.wg.Add(1)
		go l.handle(s, c, local)
	}
}

// admit applies the connection cap and the per-client throttle; a refused client is
// closed at once.
func (l *listener) admit(s *snapshot, c *net.TCPConn) bool {
	p := l.plane
	if p.active.Add(1) > int64(p.opts.MaxConns) {
		p.active.Add(-1)
		if s.cfg.Protocol == model.ProtocolTCP || !l.answerBusy(s, c) {
			s.refuse(c, true)
		}
		return false
	}
	if s.limiter != nil {
		src := remoteAddr(c)
		if !s.limiter.Allow(src.Addr(), p.now()) {
			p.active.Add(-1)
			s.refuse(c, true)
			return false
		}
	}
	return true
}

func (l *listener) handle(s *snapshot, c *net.TCPConn, local netip.AddrPort) {
	s.nb.Connections.Add(1)
	s.stats.Connections.Add(1)
	s.nb.Active.Add(1)
	s.stats.Active.Add(1)
	if s.cfg.Protocol == model.ProtocolHTTP && l.http.Parking() {
		// An idle connection may park without a goroutine: the counters and the
		// listener's wait group are settled when it closes, on whichever goroutine.
		// It is not in l.conns: the Server keeps every such connection in its own
		// lists (close asks it to close them), so an idle one holds no map entry
		// here, and its callback is the snapshot's, made once.
		l.http.ServeConnAsync(l.ctx, c, local, s.ended)
		return
	}
	id := l.conns.add(c)
	defer l.ended(s, id)
	src := remoteAddr(c)
	switch s.cfg.Protocol {
	case model.ProtocolTCP:
		l.serveTCP(s, c, src, local)
	default:
		l.serveHTTP(s, c, local)
	}
}

// ended settles the counters and the wait group of a connection handle admitted; id
// is its entry in l.conns, or 0 when it has none.
func (l *listener) ended(s *snapshot, id uint64) {
	s.stats.Active.Add(-1)
	s.nb.Active.Add(-1)
	if id != 0 {
		l.conns.remove(id)
	}
	l.plane.active.Add(-1)
	l.wg.Done()
}

// close stops accepting at once, asks http connections to finish their request and
// close, lets connections in flight finish within grace, then closes whatever is left. It returns when every connection has ended.
func (l *listener) close(grace time.Duration) {
	l.closeSockets()
	l.cancel()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	if l.h2 != nil {
		sctx, stop := context.WithTimeout(context.Background(), grace)
		l.h2.Shutdown(sctx)
		stop()
	}
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	l.conns.closeAll()
	if l.http != nil {
		l.http.CloseConns()
	}
	if l.eng != nil {
		l.eng.closeAll(l)
	}
	<-done
}

func remoteAddr(c net.Conn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// connSet tracks a listener's open connections (clients, and the nodes of tcp
// sessions) so a bounded shutdown can close them.
// It is sharded so that connections of one busy listener rarely meet on one lock, and
// each connection touches it only when it opens and when it closes.
type connSet struct {
	next   atomic.Uint64
	shards [32]struct {
		mu sync.Mutex
		m  map[uint64]net.Conn
	}
}

func (s *connSet) add(c net.Conn) uint64 {
	id := s.next.Add(1)
	sh := &s.shards[id%uint64(len(s.shards))]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[uint64]net.Conn{}
	}
	sh.m[id] = c
	sh.mu.Unlock()
	return id
}

func (s *connSet) remove(id uint64) {
	sh := &s.shards[id%uint64(len(s.shards))]
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

func (s *connSet) closeAll() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, c := range sh.m {
			c.Close()
		}
		sh.mu.Unlock()
	}
}
