package udpproxy

// This file is the per-datagram hot path from clients to nodes. It runs on
// the front loop only, which owns the session table, so it takes no lock; it
// allocates only when a session opens.

import (
	"errors"
	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"golang.org/x/sys/unix"
)

// frontLoop reads client datagrams and owns the session table.
type frontLoop struct {
	p        *Proxy
	rc       syscall.RawConn
	b        *batchBufs
	n        int
	errno    unix.Errno
	readFn   func(uintptr) bool
	sessions map[netip.AddrPort]*session
	v6       bool
	ended    bool // sessions were ended since the node loop was last woken
}

// Listen opens the frontend socket on addr and starts the proxy with s.
func Listen(addr netip.AddrPort, s *Snapshot, o Options) (*Proxy, error) {
	if o.Now == nil {
		start := time.Now()
		o.Now = func() int64 { return int64(time.Since(start)) }
	}
	if o.Log == nil {
		o.Log = slogDiscard()
	}
	network := "udp4"
	if !addr.Addr().Is4() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	// Room for bursts: the kernel caps these at net.core.[rw]mem_max.
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &Proxy{opts: o, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), conn: conn}
	p.snap.Store(s)
	p.front = frontLoop{p: p, rc: rc, b: newBatchBufs(true), sessions: map[netip.AddrPort]*session{}, v6: network == "udp6"}
	p.front.readFn = p.front.read
	if err := p.node.init(p, rc); err != nil {
		conn.Close()
		return nil, err
	}
	p.wg.Add(2)
	go p.front.run()
	go p.node.run()
	return p, nil
}

// read is the callback of RawConn.Read: one recvmmsg, or false to wait.
func (f *frontLoop) read(fd uintptr) bool {
	n, e := recvmmsg(fd, f.b.hs[:])
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	f.n, f.errno = n, e
	return true
}

func (f *frontLoop) run() {
	p := f.p
	defer p.wg.Done()
	for {
		err := f.rc.Read(f.readFn)
		now := p.opts.Now()
		switch {
		case err == nil && f.errno == 0:
			f.handle(f.n, now)
		case err == nil:
			// ENOMEM and the like: back off rather than spin on an error that stays.
			time.Sleep(time.Millisecond)
		case errors.Is(err, os.ErrDeadlineExceeded):
			s := p.snap.Load()
			f.sweep(now, s.Timeout)
			if len(f.sessions) > 0 {
				f.armSweep(s.Timeout)
			} else {
				f.p.conn.SetReadDeadline(time.Time{}) // nothing to expire: an idle proxy costs nothing
			}
		case !p.stopping.Load() && !errors.Is(err, net.ErrClosed):
			p.opts.Log.Warn("udp read failed", "addr", p.addr.String(), "err", err)
			time.Sleep(10 * time.Millisecond)
		default: // closed
			for _, s := range f.sessions {
				f.end(s, EndClosed)
			}
			p.node.frontDone.Store(true)
			p.node.wake()
			return
		}
		if f.ended {
			f.ended = false
			p.node.wake()
		}
	}
}

// armSweep sets the read deadline at which the next sweep for idle sessions
// runs: an eighth of the timeout, so a session outlives it by at most 12.5 %. It is
// armed while sessions are open.
func (f *frontLoop) armSweep(timeout time.Duration) {
	every := min(max(timeout/8, 5*time.Millisecond), time.Second)
	f.p.conn.SetReadDeadline(time.Now().Add(every))
}

// sweep ends the sessions idle for timeout.
func (f *frontLoop) sweep(now int64, timeout time.Duration) {
	for _, s := range f.sessions {
		if s.idle(now, timeout) {
			f.end(s, EndIdle)
		}
	}
}

// handle forwards a batch of n client datagrams.
func (f *frontLoop) handle(n int, now int64) {
	snap := f.p.snap.Load()
	var in uint64
	for i := range n {
		h := &f.b.hs[i]
		size := int(h.n)
		client := parseName(&f.b.names[i])
		h.hdr.Namelen = unix.SizeofSockaddrInet6
		s := f.forward(snap, client, f.b.bufs[i*maxDatagram:i*maxDatagram+size], now)
		if s == nil {
			continue
		}
		s.lastIn = now
		s.bytesIn += uint64(size)
		s.dIn++
		s.ctr.BytesIn.Add(uint64(size))
		in += uint64(size)
	}
	if in > 0 {
		snap.NB.BytesIn.Add(in)
		snap.Config.BytesIn.Add(in)
	}
}

// forward sends one datagram of client to its session's node, opening the
// session if needed, and returns the session, or nil when the datagram was
// dropped. A session whose socket reports that an earlier datagram met a closed
// port (ECONNREFUSED) ends, and the datagram goes to a new session instead.
func (f *frontLoop) forward(snap *Snapshot, client netip.AddrPort, b []byte, now int64) *session {
	s := f.sessions[client]
	for try := 0; try < 2; try++ {
		if s != nil && !f.current(s, snap) {
			f.end(s, s.reason)
			s = nil
		}
		if s == nil {
			if s = f.open(snap, client, now); s == nil {
				return nil
			}
		}
		e := write(s.fd, b)
		switch e {
		case 0:
			return s
		case unix.EAGAIN, unix.ENOBUFS:
			return nil // UDP: the datagram is lost, as on a full queue anywhere
		}
		s.backend.PassiveFailure()
		s.failed.Store(true)
	}
	return nil
}

// write sends b on the connected socket fd.
func write(fd int, b []byte) unix.Errno {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	} else {
		p = unsafe.Pointer(&zero)
	}
	_, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(p), uintptr(len(b)))
	return e
}

var zero byte

// current reports whether s may go on with its node under snap; if not,
// s.reason says why.
func (f *frontLoop) current(s *session, snap *Snapshot) bool {
	switch {
	case s.failed.Load():
		s.reason = EndICMP
		return false
	case s.node.State.Status() == balance.StatusDown:
		// DOWN, or rejected (the checker marks reject nodes DOWN): unlike a
		// tcp connection, a UDP flow can move, so it does.
		s.reason = EndNodeDown
		return false
	case s.snap != snap:
		n := snap.Pool.Lookup(s.node.ID)
		if n == nil || n.State != s.node.State || n.Mode == balance.ModeReject {
			s.reason = EndNodeDown
			return false
		}
		s.snap = snap
	}
	return true
}

// open starts a session for client, or returns nil (and counts a refusal)
// when the cap, the throttle or the lack of an eligible node says no. A client the
// firewall drops is asked nothing else and counted only as the firewall's drop.
func (f *frontLoop) open(snap *Snapshot, client netip.AddrPort, now int64) *session {
	p := f.p
	o := &p.opts
	if ok, _ := snap.Firewall.Allow(client.Addr(), firewall.UDP, p.addr.Port()); !ok {
		return nil
	}
	if o.Active != nil && o.Active.Add(1) > o.MaxSessions {
		o.Active.Add(-1)
		f.refuse(snap)
		return nil
	}
	s := f.dial(snap, client, now)
	if s == nil {
		if o.Active != nil {
			o.Active.Add(-1)
		}
		f.refuse(snap)
		return nil
	}
	f.sessions[client] = s
	if len(f.sessions) == 1 {
		f.armSweep(snap.Timeout)
	}
	s.node.State.Acquire()
	snap.NB.Connections.Add(1)
	snap.NB.Active.Add(1)
	snap.Config.Connections.Add(1)
	snap.Config.Active.Add(1)
	s.ctr.Connections.Add(1)
	s.ctr.Active.Add(1)
	p.count.Add(1)
	return s
}

// dial chooses the node of a new session and opens its socket.
func (f *frontLoop) dial(snap *Snapshot, client netip.AddrPort, now int64) *session {
	p := f.p
	if snap.Limiter != nil && !snap.Limiter.Allow(client.Addr(), now) {
		return nil
	}
	n := choose(snap, client, now)
	if n == nil {
		return nil
	}
	be, ok := n.Data.(Backend)
	if !ok {
		return nil
	}
	fd, err := dialNode(n.Addr, p.opts.Source)
	if err != nil {
		// Out of descriptors or memory is this host's trouble, not the node's.
		if !errors.Is(err, unix.EMFILE) && !errors.Is(err, unix.ENFILE) && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.ENOMEM) {
			be.PassiveFailure()
		}
		return nil
	}
	s := &session{client: newClientAddr(client, f.v6), fd: fd, node: n, backend: be, ctr: be.Counters(),
		snap: snap, start: time.Now(), lastIn: now}
	s.lastOut.Store(now)
	slot, ok := p.slots.put(s)
	if !ok {
		unix.Close(fd)
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(slot)}
	if err := unix.EpollCtl(p.node.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.slots.release(slot)
		unix.Close(fd)
		return nil
	}
	return s
}

func (f *frontLoop) refuse(snap *Snapshot) {
	snap.NB.Refused.Add(1)
	snap.Config.Refused.Add(1)
}

// end removes s from the table and hands it to the node loop to close.
func (f *frontLoop) end(s *session, reason string) {
	delete(f.sessions, s.client.ap)
	s.reason = reason
	p := f.p
	p.closeMu.Lock()
	p.ended = append(p.ended, s)
	p.closeMu.Unlock()
	f.ended = true
}
