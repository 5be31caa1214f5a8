//go:build linux

package dataplane

// Hot path of tcp configs on the epoll engine (l4engine_linux.go): one session from
// admission to its end, on the loop that accepted it. It takes no lock and allocates
// nothing (sessions, buffers and pipes are pooled); counters are the atomics the
// goroutine path adds to.

import (
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/proxyproto"
	"github.com/nodebalancer/nodebalancer/internal/stats"
)

// session is one tcp session: the client's socket, the node's, and the two flows
// between them.
type session struct {
	slot     int32
	gen      uint32
	l        *listener
	s        *snapshot
	n        *balance.Node
	tried    *balance.Node
	attempts int
	cfd, nfd int
	src      netip.AddrPort
	local    netip.AddrPort
	key      uint64
	start    time.Time // for the access log only
	since    int64     // when it entered its list (loop clock)

	list       *slist
	prev, next *session

	connected bool
	acquired  bool    // node counters taken (released at the end)
	wr        [2]bool // the socket (0 client, 1 node) may take a write
	watchOut  [2]bool // the socket is watched for EPOLLOUT (see blocked)
	hup       [2]bool // the peer of the socket has ended its side (EPOLLRDHUP)
	flow      [2]flow // 0: client to node, 1: node to client
	idleWatch bool
	seen      bool // bytes moved since the last idle look
	quiet     int
	queued    bool // in lp.again
}

// flow is one direction of a session; its source is socket i of the session for
// flow i, its destination the other.
type flow struct {
	readable bool    // the source may have bytes (an edge not yet read to the end)
	eof      bool    // the source has ended
	done     bool    // eof and everything written
	bulk     bool    // reads splice (a bulk transfer)
	burst    int     // bytes spliced since the source was last found empty
	buf      *[]byte // buf[off:end] is still to be written
	off, end int
	pipe     *splicePipe // borrowed while bytes are in it or this wake-up splices
	total    int64
	pending  int64 // not yet added to the counters
}

func (lp *loop) newSession() *session {
	if n := len(lp.free); n > 0 {
		slot := lp.free[n-1]
		lp.free = lp.free[:n-1]
		return lp.sess[slot]
	}
	x := &session{slot: int32(len(lp.sess))}
	lp.sess = append(lp.sess, x)
	return x
}

// token is what the epoll set holds for socket side of x: its events (EPOLLOUT only
// while the socket is watched for it) and the session's slot and generation.
func (x *session) token(side int) unix.EpollEvent {
	ev := uint32(sessionEvents)
	if x.watchOut[side] {
		ev |= unix.EPOLLOUT
	}
	return unix.EpollEvent{Events: ev, Fd: x.slot, Pad: int32(x.gen<<2) | int32(side)}
}

// blocked notes that socket s of x took no more (EAGAIN) and has it watched for
// EPOLLOUT from now on. A socket is first added without EPOLLOUT: a new one is
// writable, and adding it with EPOLLOUT would queue an event for that (a wake-up
// of the loop that finds nothing to do) twice per session. It reports false when
// the session ended.
func (lp *loop) blocked(x *session, s int) bool {
	x.wr[s] = false
	if x.watchOut[s] {
		return true
	}
	x.watchOut[s] = true
	ev := x.token(s)
	// The change reports EPOLLOUT at once if the socket has room again already.
	if _, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(lp.epfd), unix.EPOLL_CTL_MOD, uintptr(x.fd(s)),
		uintptr(unsafe.Pointer(&ev)), 0, 0); errno != 0 {
		lp.end(x)
		return false
	}
	return true
}

// move puts x at the tail of list to, stamped now.
func (lp *loop) move(x *session, to *slist) {
	lp.unlink(x)
	x.list, x.since, x.prev = to, lp.now, to.tail
	if to.tail != nil {
		to.tail.next = x
	} else {
		to.head = x
	}
	to.tail = x
}

func (lp *loop) unlink(x *session) {
	l := x.list
	if l == nil {
		return
	}
	if x.prev != nil {
		x.prev.next = x.next
	} else {
		l.head = x.next
	}
	if x.next != nil {
		x.next.prev = x.prev
	} else {
		l.tail = x.prev
	}
	x.list, x.prev, x.next = nil, nil, nil
}

// admit applies the firewall, the connection cap and the throttle to a client just
// accepted, then starts its session.
func (lp *loop) admit(ls *lsock, fd int, src netip.AddrPort) {
	l, p := ls.l, lp.p
	s := l.snap.Load()
	if s.guard.Armed() != nil {
		if ok, rule := s.guard.Allow(src.Addr(), firewall.TCP, ls.local.Port()); !ok {
			closeReset(fd)
			if log := p.opts.DropLog; log != nil {
				log(s.nbID, s.cfg.ID, src, ls.local, rule)
			}
			return
		}
	}
	if p.active.Add(1) > int64(p.opts.MaxConns) || s.limiter != nil && !s.limiter.Allow(src.Addr(), p.now()) {
		p.active.Add(-1)
		s.stats.Refused.Add(1)
		s.nb.Refused.Add(1)
		closeReset(fd)
		return
	}
	l.wg.Add(1)
	s.nb.Connections.Add(1)
	s.stats.Connections.Add(1)
	s.nb.Active.Add(1)
	s.stats.Active.Add(1)
	x := lp.newSession()
	x.l, x.s, x.cfd, x.nfd, x.src, x.local = l, s, fd, -1, src, ls.local
	x.key = balance.HashAddr(src.Addr())
	x.wr[0] = true // a new socket has room
	if p.opts.TCPAccessLog != nil {
		x.start = time.Now()
	}
	ev := x.token(kindClient)
	if epollAdd(lp.epfd, fd, &ev) != 0 {
		lp.end(x)
		return
	}
	lp.dial(x)
}

// How the first write to a node's socket just connecting went.
const (
	firstSent   = iota // taken: the connect has completed
	firstWait          // not yet (EAGAIN), or nothing to write: wait for EPOLLOUT
	firstFailed        // the connect failed
)

// writeFirst writes the PROXY header, when the config sends one, to the node's
// socket just after connect: on loopback and near nodes the connect has mostly
// completed by the time connect returns, and the write says so (or that it failed)
// without a trip through the epoll set. Without a header there is nothing to write
// yet: the client's bytes are read once the node has the connection (reading them
// as the client is accepted was tried: under wrk's new-connection load they had
// not come yet in nearly every session, a read more per session for nothing).
func (lp *loop) writeFirst(x *session) int {
	pp := x.s.cfg.ProxyProtocol
	if pp == model.ProxyProtocolNone {
		return firstWait
	}
	var hdr [64]byte
	h := appendProxyHeader(hdr[:0], pp, x)
	n, errno := write(x.nfd, h)
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return firstWait
	case errno != 0 || n != len(h): // a socket just connected has room for a few dozen bytes
		return firstFailed
	}
	return firstSent
}

func appendProxyHeader(b []byte, pp model.ProxyProtocol, x *session) []byte {
	if pp == model.ProxyProtocolV1 {
		return proxyproto.AppendV1(b, x.src, x.local)
	}
	return proxyproto.AppendV2(b, x.src, x.local)
}

// dial starts a connect to the next node for x; with none left the client is closed.
func (lp *loop) dial(x *session) {
	for x.attempts < maxAttempts {
		n := x.s.choose(x.src.Addr(), x.key, x.tried)
		if n == nil {
			break
		}
		x.attempts++
		be := n.Data.(*backend)
		fd, errno := lp.connect(be.addr)
		if errno == 0 {
			x.n, x.nfd = n, fd
			first := lp.writeFirst(x)
			x.watchOut[1] = first == firstWait // to learn when the connect completes
			ev := x.token(kindNode)
			if first != firstFailed && epollAdd(lp.epfd, fd, &ev) == 0 {
				if first == firstWait {
					lp.move(x, &lp.connecting)
				} else {
					x.wr[1] = true
					lp.connected(x, true)
				}
				return
			}
			if first == firstSent {
				// The node has the PROXY header: not to be retried elsewhere.
				// (Out of epoll memory: rare.)
				lp.end(x)
				return
			}
			closeFD(fd)
			x.n, x.nfd, x.watchOut[1] = nil, -1, false
		}
		be.passiveFailure()
		x.tried = n
	}
	// No node could take it: an orderly close, as on the goroutine path.
	x.s.stats.Refused.Add(1)
	x.s.nb.Refused.Add(1)
	lp.end(x)
}

// connect opens a non-blocking socket to addr and starts connecting.
func (lp *loop) connect(addr netip.AddrPort) (int, syscall.Errno) {
	var sa unix.RawSockaddrAny
	salen := putSockaddr(&sa, addr)
	fam := unix.AF_INET
	if addr.Addr().Is6() {
		fam = unix.AF_INET6
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(fam), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	fd := int(r)
	// As Go's dialer does: small writes (an answer, a request) leave at once.
	setNoDelay(fd)
	if e := lp.e; e.srcLen > 0 && int(e.src.Addr.Family) == fam {
		if _, _, errno := syscall.RawSyscall(syscall.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&e.src)), uintptr(e.srcLen)); errno != 0 {
			closeFD(fd)
			return -1, errno
		}
	}
	_, _, errno = syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(salen))
	if errno != 0 && errno != unix.EINPROGRESS {
		closeFD(fd)
		return -1, errno
	}
	return fd, 0
}

// connectFailed counts a failed (or timed out) connect against its node and tries
// the next one.
func (lp *loop) connectFailed(x *session) {
	x.n.Data.(*backend).passiveFailure()
	closeFD(x.nfd)
	x.nfd = -1
	x.tried, x.n = x.n, nil
	x.wr[1], x.hup[1], x.flow[1].readable, x.watchOut[1] = false, false, false, false
	x.gen++ // events of the closed socket are stale; re-register the client's
	ev := x.token(kindClient)
	if unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, x.cfd, &ev) != nil {
		lp.end(x)
		return
	}
	lp.dial(x)
}

// connected starts moving bytes once the node has taken the connection; headerSent
// says the PROXY header (if the config sends one) has been written (writeFirst).
func (lp *loop) connected(x *session, headerSent bool) {
	be := x.n.Data.(*backend)
	be.passiveSuccess()
	x.n.State.Acquire()
	be.stats.Active.Add(1)
	be.stats.Connections.Add(1)
	x.acquired, x.connected = true, true
	lp.move(x, &lp.young)
	if pp := x.s.cfg.ProxyProtocol; pp != model.ProxyProtocolNone && !headerSent {
		var hdr [64]byte
		h := appendProxyHeader(hdr[:0], pp, x)
		// A socket just connected has room for a few dozen bytes.
		if n, errno := write(x.nfd, h); errno != 0 || n != len(h) {
			lp.end(x)
			return
		}
	}
	if lp.p.opts.Timeouts.TCPIdle > 0 {
		x.idleWatch = true
		if lp.idle == 0 {
			lp.nextSweep = lp.now + int64(max(lp.p.opts.Timeouts.TCPIdle/idleTicks, time.Millisecond))
		}
		lp.idle++
	}
	if lp.pump(x, 0) {
		lp.pump(x, 1)
	}
}

// ready handles the events of one socket of x.
func (lp *loop) ready(x *session, side int, ev uint32) {
	if !x.connected {
		if side == kindNode {
			switch {
			case ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0:
				lp.connectFailed(x)
			case ev&unix.EPOLLOUT != 0:
				x.wr[1] = true
				if ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
					x.flow[1].readable = true
				}
				x.hup[1] = ev&unix.EPOLLRDHUP != 0
				lp.connected(x, false)
			}
			return
		}
		if ev&unix.EPOLLERR != 0 { // the client gave up (a reset)
			lp.end(x)
			return
		}
	}
	f := &x.flow[side]
	if ev&unix.EPOLLERR != 0 && f.eof {
		// Nothing will read this socket again to learn of the error.
		lp.end(x)
		return
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		x.hup[side] = true
	}
	in := ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	out := ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0
	if in {
		f.readable = true
	}
	if out {
		x.wr[side] = true
	}
	if !x.connected {
		return // moved once the node has the connection
	}
	if in && !lp.pump(x, side) {
		return
	}
	if out {
		lp.pump(x, 1-side)
	}
}

// step is how a part of pump ended.
type step uint8

const (
	stepOn    step = iota // go on
	stepWait              // wait for the next event
	stepEnded             // the session ended
)

// pump moves what flow d of x can move now. It reports false when the session ended.
func (lp *loop) pump(x *session, d int) bool {
	f := &x.flow[d]
	for rounds := 0; ; {
		switch lp.writeOut(x, d) { // what is already read goes first
		case stepWait:
			return true
		case stepEnded:
			return false
		}
		if f.pipe != nil && (!f.bulk || !f.readable) {
			pipePool.Put(f.pipe) // empty: no pipe is held while waiting
			f.pipe = nil
		}
		if f.eof {
			return lp.finished(x, d)
		}
		if !f.readable {
			return true
		}
		if rounds++; rounds > pumpRounds {
			if !x.queued {
				x.queued = true
				lp.again = append(lp.again, sessionRef{x, x.gen})
			}
			return true
		}
		st := stepOn
		if f.bulk {
			st = lp.spliceIn(x, d)
		} else {
			st = lp.readIn(x, d)
		}
		if st == stepEnded {
			return false
		}
	}
}

// writeOut writes what flow d holds (buffer, then pipe) to its destination:
// stepOn once all is written, stepWait when the destination is full.
func (lp *loop) writeOut(x *session, d int) step {
	f := &x.flow[d]
	dst := x.fd(1 - d)
	for f.end > f.off || f.pipe != nil && f.pipe.n > 0 {
		if !x.wr[1-d] {
			return stepWait
		}
		var n int
		var errno syscall.Errno
		if f.end > f.off {
			n, errno = write(dst, (*f.buf)[f.off:f.end])
		} else {
			n, errno = rawSplice(f.pipe.r, dst, f.pipe.n)
		}
		switch errno {
		case 0:
		case unix.EAGAIN:
			if !lp.blocked(x, 1-d) {
				return stepEnded
			}
			return stepWait
		case unix.EINTR:
			continue
		default:
			lp.end(x)
			return stepEnded
		}
		// A partial write goes round again: the next one finds the socket full
		// (EAGAIN) or takes the rest.
		lp.count(x, d, n)
		if f.end > f.off {
			if f.off += n; f.off == f.end {
				copyBufPool.Put(f.buf)
				f.buf, f.off, f.end = nil, 0, 0
			}
		} else {
			f.pipe.n -= n
		}
	}
	return stepOn
}

// spliceIn moves what the source of flow d has into the flow's pipe (bulk mode).
func (lp *loop) spliceIn(x *session, d int) step {
	f := &x.flow[d]
	if f.pipe == nil {
		if f.pipe, _ = pipePool.Get().(*splicePipe); f.pipe == nil {
			f.bulk = false // no pipe (out of descriptors): copy through the buffer
			return stepOn
		}
	}
	n, errno := rawSplice(x.fd(d), f.pipe.w, pipeSize)
	switch {
	case errno == unix.EAGAIN:
		// A transfer that brought at least a buffer's worth since the source was
		// last empty stays bulk: its next wake-up splices at once rather than
		// copying its first 16 KiB through the buffer.
		f.readable, f.bulk, f.burst = false, f.burst >= copyBufSize, 0
	case errno == unix.EINTR:
	case errno != 0:
		lp.end(x)
		return stepEnded
	case n == 0:
		f.eof = true
	default:
		f.pipe.n += n
		f.burst += n
		x.seen = true
	}
	return stepOn
}

// readIn reads from the source of flow d through the loop's buffer and writes what
// it read at once if the destination takes it. Each wake-up's first read goes this
// way (a request or an answer of a few hundred bytes costs less so than through a
// pipe); one that fills the buffer means a bulk transfer, whose rest is spliced.
func (lp *loop) readIn(x *session, d int) step {
	f := &x.flow[d]
	b := *lp.buf
	n, errno := read(x.fd(d), b)
	switch {
	case errno == unix.EAGAIN:
		f.readable = false
		return stepOn
	case errno == unix.EINTR:
		return stepOn
	case errno != 0:
		lp.end(x)
		return stepEnded
	case n == 0:
		f.eof = true
		return stepOn
	}
	x.seen = true
	switch {
	case n == len(b):
		f.bulk = true
	case x.hup[d]:
		f.eof = true // the end of the stream was seen before this short read
	default:
		f.readable = false // a short read emptied the socket: more is a new edge
	}
	if x.wr[1-d] {
		var w int
		var errno syscall.Errno
		if f.eof {
			// pump ends the destination (finished) right after this write, so the
			// last bytes and the FIN may go in one segment.
			w, errno = writeLast(x.fd(1-d), b[:n])
		} else {
			w, errno = write(x.fd(1-d), b[:n])
		}
		switch {
		case errno == 0 && w == n:
			lp.count(x, d, n)
			return stepOn
		case errno == 0: // partly written: the rest waits in the buffer
			lp.count(x, d, w)
			f.buf, f.off, f.end = lp.buf, w, n
			lp.buf = copyBufPool.Get().(*[]byte)
			return stepOn
		case errno == unix.EAGAIN:
			if !lp.blocked(x, 1-d) {
				return stepEnded
			}
		case errno == unix.EINTR:
		default:
			lp.end(x)
			return stepEnded
		}
	}
	// The bytes become the flow's (the loop takes a fresh buffer) until written.
	f.buf, f.off, f.end = lp.buf, 0, n
	lp.buf = copyBufPool.Get().(*[]byte)
	return stepOn
}

// fd is the socket flow d reads from: 0 the client's, 1 the node's.
func (x *session) fd(d int) int {
	if d == 0 {
		return x.cfd
	}
	return x.nfd
}

// count adds n bytes to flow d; the counters get them every chunk and at the end.
func (lp *loop) count(x *session, d, n int) {
	f := &x.flow[d]
	f.total += int64(n)
	if f.pending += int64(n); f.pending >= chunk {
		lp.flush(x, d)
	}
}

func (lp *loop) flush(x *session, d int) {
	f := &x.flow[d]
	if f.pending == 0 || x.n == nil {
		return
	}
	v := uint64(f.pending)
	f.pending = 0
	be := x.n.Data.(*backend)
	if d == 0 {
		be.stats.BytesIn.Add(v)
		x.s.nb.BytesIn.Add(v)
		x.s.stats.BytesIn.Add(v)
	} else {
		be.stats.BytesOut.Add(v)
		x.s.nb.BytesOut.Add(v)
		x.s.stats.BytesOut.Add(v)
	}
}

// finished ends flow d, whose source has ended and whose bytes are all written: the
// destination is told (shutdown), or the session ends when the other flow has ended
// too. It reports false when the session ended.
func (lp *loop) finished(x *session, d int) bool {
	f := &x.flow[d]
	if f.done {
		return true
	}
	f.done = true
	lp.flush(x, d)
	if x.flow[1-d].done {
		lp.end(x)
		return false
	}
	if d == 0 {
		// The client has finished sending; the session waits on the node only.
		shutdownWrite(x.nfd)
		return true
	}
	// The client has its whole answer; what it still sends gets a bounded time
	// (HAProxy's "timeout client-fin").
	shutdownWrite(x.cfd)
	lp.move(x, &lp.halfClosed)
	return true
}

// end closes both sockets of x, settles its counters, writes its access-log entry and
// frees its slot.
func (lp *loop) end(x *session) {
	lp.unlink(x)
	lp.flush(x, 0)
	lp.flush(x, 1)
	closeFD(x.cfd)
	if x.nfd >= 0 {
		closeFD(x.nfd)
	}
	for d := range x.flow {
		f := &x.flow[d]
		if f.buf != nil {
			copyBufPool.Put(f.buf)
		}
		if p := f.pipe; p != nil {
			if p.n == 0 {
				pipePool.Put(p)
			} else {
				p.destroy()
			}
		}
	}
	s, p := x.s, lp.p
	if x.acquired {
		x.n.Data.(*backend).stats.Active.Add(-1)
		x.n.State.Release()
	}
	if x.idleWatch {
		lp.idle--
	}
	s.nb.Active.Add(-1)
	s.stats.Active.Add(-1)
	p.active.Add(-1)
	if logf := p.opts.TCPAccessLog; logf != nil {
		e := stats.TCPEntry{Start: x.start, Duration: time.Since(x.start), Client: x.src, Local: x.local,
			BytesIn: x.flow[0].total, BytesOut: x.flow[1].total}
		if x.acquired {
			be := x.n.Data.(*backend)
			e.Node, e.NodeID = be.addr, x.n.ID
		}
		logf(s.nbID, s.cfg.ID, e)
	}
	l := x.l
	gen := x.gen + 1
	*x = session{slot: x.slot, gen: gen, cfd: -1, nfd: -1}
	lp.free = append(lp.free, x.slot)
	l.wg.Done()
}
