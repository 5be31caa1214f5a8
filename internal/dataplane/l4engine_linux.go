//go:build linux

package dataplane

// Hot path of tcp configs, the epoll engine (Options.TCPEngine "epoll", the default on
// Linux). A few event loops, one per P, each with its own epoll set, accept clients,
// connect to nodes and move bytes for every tcp session; a session is two non-blocking
// sockets and a pooled struct owned by one loop, never a goroutine. So:
//
//   - an idle session costs its struct (a few hundred bytes), not two goroutine stacks;
//   - nothing of Go's net package runs per session: raw accept4 (the client's address
//     comes with it; the local one is the listener's), connect completed on EPOLLOUT
//     (EPOLLERR says it failed: SO_ERROR is read only then), sockets closed without
//     epoll_ctl DEL (closing the only descriptor leaves the set);
//   - epoll's EPOLLRDHUP is read: a short read that follows it is the end of the
//     stream, without the read that would return 0; a short read ends a wake-up
//     (edge-triggered: more data is a new edge), so no read finds nothing in the
//     usual exchange;
//   - timers are lists in start order (connect, keep-alive on the node's socket after
//     keepAliveAfter, half-close), looked at when the loop wakes: no timer per session.
//
// A loop touches only its own sessions; what others ask of it (a listener to serve or
// forget, a listener's sessions to close) goes through its command queue and eventfd.
// The per-session path takes no lock: counters are the same atomics the goroutine
// path adds to.

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
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

// What an epoll event's data names: the low two bits of Pad are the kind, the rest the
// session's generation (a stale event of a slot reused since is dropped); Fd is the
// slot.
const (
	kindClient = 0 // the client's socket of session slot Fd (flow 0 reads it)
	kindNode   = 1 // the node's socket of session slot Fd (flow 1 reads it)
	kindListen = 2 // listening socket slot Fd
	kindWake   = 3 // the loop's eventfd
)

const (
	sessionEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	// acceptBatch bounds the clients one wake-up accepts, so that a flood of new
	// connections does not starve sessions (the listener is level-triggered: the rest
	// is seen on the next wait).
	acceptBatch = 32
	// pumpRounds bounds the reads of one flow per wake-up; a flow with more to move
	// is looked at again after the other ready events.
	pumpRounds = 16
	maxEvents  = 256
)

// engine is the epoll event loops of a Plane.
type engine struct {
	p     *Plane
	loops []*loop
	wg    sync.WaitGroup
	epoch time.Time
	// keepAliveAfter is the package's, read once: the loops do not race a test
	// that changes it.
	keepAliveAfter time.Duration
	// src is Options.BackendSource as a socket address (len 0: none).
	src    unix.RawSockaddrAny
	srcLen uint32
}

// newEngine starts n event loops.
func newEngine(p *Plane, n int) (*engine, error) {
	e := &engine{p: p, epoch: time.Now(), keepAliveAfter: keepAliveAfter}
	if a := p.opts.BackendSource; a.IsValid() {
		e.srcLen = putSockaddr(&e.src, netip.AddrPortFrom(a, 0))
	}
	for i := 0; i < n; i++ {
		lp, err := newLoop(e, i)
		if err != nil {
			for _, lp := range e.loops {
				lp.file.Close()
				unix.Close(lp.wakefd)
			}
			return nil, err
		}
		e.loops = append(e.loops, lp)
	}
	e.wg.Add(len(e.loops))
	for _, lp := range e.loops {
		go lp.run()
	}
	return e, nil
}

// stop ends the loops once every listener is closed and its sessions have ended.
func (e *engine) stop() {
	for _, lp := range e.loops {
		lp.post(func() { lp.stopped = true })
	}
	e.wg.Wait()
}

// lsock is a listening socket served by every loop of the engine.
type lsock struct {
	fd    int
	local netip.AddrPort
	l     *listener
	slots []int32 // its slot in each loop
	// backoff is each loop's current pause after a failed accept (doubling from 5 ms
	// to 1 s; zero once an accept succeeds).
	backoff []time.Duration
	mu      sync.Mutex
	refs    int // loops still holding it; the last one closes fd
}

// serveListener makes every loop accept on the socket of ln (it takes the socket over:
// the Go listener is closed), for l. The socket's listener wait-group share is
// released when the last loop lets go of it.
func (e *engine) serveListener(l *listener, fd int, local netip.AddrPort) *lsock {
	ls := &lsock{fd: fd, local: local, l: l, slots: make([]int32, len(e.loops)), backoff: make([]time.Duration, len(e.loops)),
		refs: len(e.loops)}
	l.wg.Add(1)
	for i, lp := range e.loops {
		ls.slots[i] = -1
		lp.post(func() { lp.addListener(ls) })
	}
	return ls
}

// closeListener stops ls accepting now (its port can be bound again at once: a shut
// down socket no longer listens) and has the loops let go of it.
func (e *engine) closeListener(ls *lsock) {
	unix.Shutdown(ls.fd, unix.SHUT_RDWR)
	for _, lp := range e.loops {
		lp.post(func() { lp.dropListener(ls) })
	}
}

// closeAll ends every session of l now.
func (e *engine) closeAll(l *listener) {
	for _, lp := range e.loops {
		lp.post(func() { lp.closeSessionsOf(l) })
	}
}

// slist is a list of sessions in the order they entered it; a session is in at most
// one.
type slist struct{ head, tail *session }

// loop is one event loop: its epoll set, its sessions, its timers.
type loop struct {
	e     *engine
	p     *Plane
	idx   int
	epfd  int
	file  *os.File        // epfd, registered in Go's poller
	rc    syscall.RawConn // of file
	armed int64           // file's read deadline (loop clock), 0 when none
	// poll is lp.serve as the poller calls it (made once: a closure per wait would
	// be an allocation); pollErr is the error it left the poller for.
	poll    func(uintptr) bool
	pollErr syscall.Errno
	wakefd  int
	events  []unix.EpollEvent
	buf     *[]byte // read buffer; a write that cannot finish keeps it (flow.buf)
	sess    []*session
	free    []int32
	lsocks  []*lsock
	now     int64 // nanoseconds since e.epoch, read once per wake-up

	mu      sync.Mutex // the command queue only
	cmds    []func()
	running []func()
	stopped bool

	// Sessions by state, in the order they entered it: connecting (connect timeout),
	// young (keep-alive towards the node not yet on), old, halfClosed (the node has
	// ended; the client gets Timeouts.HalfClose to end too).
	connecting, young, old, halfClosed slist
	idle                               int   // sessions with an idle watch
	nextSweep                          int64 // of idle watches
	again, againSpare                  []sessionRef
	paused                             []pausedListener
}

type sessionRef struct {
	x   *session
	gen uint32
}

type pausedListener struct {
	ls    *lsock
	until int64
}

func newLoop(e *engine, idx int) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Pad: kindWake}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	// os.NewFile registers a non-blocking descriptor with Go's poller.
	var rc syscall.RawConn
	f := (*os.File)(nil)
	if err = unix.SetNonblock(epfd, true); err == nil {
		f = os.NewFile(uintptr(epfd), "epoll")
		rc, err = f.SyscallConn()
	}
	if err != nil {
		if f != nil {
			f.Close()
		} else {
			unix.Close(epfd)
		}
		unix.Close(wfd)
		return nil, fmt.Errorf("epoll set in the poller: %w", err)
	}
	lp := &loop{e: e, p: e.p, idx: idx, epfd: epfd, file: f, rc: rc, wakefd: wfd, events: make([]unix.EpollEvent, maxEvents),
		buf: copyBufPool.Get().(*[]byte)}
	lp.poll = func(uintptr) bool { return lp.serve() }
	return lp, nil
}

// post queues f to run on the loop.
func (lp *loop) post(f func()) {
	lp.mu.Lock()
	lp.cmds = append(lp.cmds, f)
	lp.mu.Unlock()
	one := [8]byte{1}
	unix.Write(lp.wakefd, one[:])
}

func (lp *loop) clock() { lp.now = int64(time.Since(lp.e.epoch)) }

func (lp *loop) run() {
	defer lp.e.wg.Done()
	lp.clock()
	for !lp.stopped {
		lp.arm()
		lp.pollErr = 0
		err := lp.rc.Read(lp.poll)
		lp.clock()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			lp.expire()
		case err == nil && lp.pollErr != 0:
			err = lp.pollErr
			fallthrough
		case err != nil:
			lp.p.log.Error("tcp engine: epoll_wait failed", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
	}
	lp.file.Close() // the epoll set, out of Go's poller
	unix.Close(lp.wakefd)
	copyBufPool.Put(lp.buf)
}

// serve is the loop's body, called by the poller (lp.poll): once when the loop
// starts waiting, then each time the epoll set became readable. It handles what is
// ready and returns false to park the goroutine in Go's poller until more is (the
// epoll set is a pollable descriptor), true when the loop must leave the poller (to
// stop, or on an error).
//
// It does not look at the set again before parking: an event that came in while it
// worked left an edge in Go's poller, which wakes it at once. Only a batch that
// filled lp.events, or flows with more to move, make it look again. So a wake-up
// costs the poller's epoll_wait and one of the loop's, and never blocks a thread in
// epoll_wait (which would have the runtime hand its P to another thread and back).
func (lp *loop) serve() bool {
	for {
		n, errno := epollWait0(lp.epfd, lp.events)
		if errno != 0 && errno != unix.EINTR {
			lp.pollErr = errno
			return true
		}
		lp.clock()
		for i := 0; i < n; i++ {
			lp.dispatch(&lp.events[i])
		}
		lp.expire()
		if lp.stopped {
			return true
		}
		if n < len(lp.events) && len(lp.again) == 0 {
			lp.arm()
			return false
		}
	}
}

// arm sets the epoll file's read deadline to the next timer of the loop, which wakes
// the poller's wait for it. The deadline is moved only when it must come sooner (or
// has passed): one that comes early costs a wake-up that finds nothing due, rather
// than a timer change per wait.
func (lp *loop) arm() {
	next := lp.next()
	switch {
	case next < 0 && lp.armed != 0:
		lp.file.SetReadDeadline(time.Time{})
		lp.armed = 0
	case next >= 0 && (lp.armed == 0 || next < lp.armed || lp.armed <= lp.now):
		lp.file.SetReadDeadline(lp.e.epoch.Add(time.Duration(next)))
		lp.armed = next
	}
}

func (lp *loop) dispatch(ev *unix.EpollEvent) {
	kind, gen := ev.Pad&3, uint32(ev.Pad)>>2
	switch kind {
	case kindWake:
		var b [8]byte
		unix.Read(lp.wakefd, b[:])
		lp.runCommands()
	case kindListen:
		if ls := lp.lsocks[ev.Fd]; ls != nil {
			lp.accept(ls, ev.Events)
		}
	default:
		x := lp.sess[ev.Fd]
		if x.gen&(1<<30-1) != gen || x.cfd < 0 {
			return // the slot's session ended since the event was queued
		}
		lp.ready(x, int(kind), ev.Events)
	}
}

func (lp *loop) runCommands() {
	lp.mu.Lock()
	cmds := lp.cmds
	lp.cmds = lp.running[:0]
	lp.mu.Unlock()
	for i, f := range cmds {
		f()
		cmds[i] = nil
	}
	lp.running = cmds
}

// next is when the next timer of the loop is due (loop clock), -1 when none is.
func (lp *loop) next() int64 {
	next := int64(-1)
	due := func(l *slist, after time.Duration) {
		if l.head != nil {
			if d := l.head.since + int64(after); next < 0 || d < next {
				next = d
			}
		}
	}
	t := &lp.p.opts.Timeouts
	due(&lp.connecting, t.Connect)
	due(&lp.young, lp.e.keepAliveAfter)
	due(&lp.halfClosed, t.HalfClose)
	if lp.idle > 0 && (next < 0 || lp.nextSweep < next) {
		next = lp.nextSweep
	}
	for _, pl := range lp.paused {
		if next < 0 || pl.until < next {
			next = pl.until
		}
	}
	return next
}

// expire runs what is due: connect timeouts, keep-alive on sessions that lasted,
// half-close timeouts, idle watches, paused listeners, flows with more to move.
func (lp *loop) expire() {
	t := &lp.p.opts.Timeouts
	for x := lp.connecting.head; x != nil && lp.now-x.since >= int64(t.Connect); x = lp.connecting.head {
		lp.connectFailed(x)
	}
	for x := lp.young.head; x != nil && lp.now-x.since >= int64(lp.e.keepAliveAfter); x = lp.young.head {
		setKeepAlive(x.nfd)
		lp.move(x, &lp.old)
	}
	for x := lp.halfClosed.head; x != nil && lp.now-x.since >= int64(t.HalfClose); x = lp.halfClosed.head {
		lp.end(x)
	}
	if lp.idle > 0 && lp.now >= lp.nextSweep {
		lp.sweepIdle()
	}
	if len(lp.paused) > 0 {
		lp.resumeListeners()
	}
	if len(lp.again) > 0 {
		// Flows re-queued by the pumps below go to the other slice (no allocation).
		again := lp.again
		lp.again, lp.againSpare = lp.againSpare[:0], again
		for _, r := range again {
			if r.x.gen == r.gen && r.x.cfd >= 0 {
				r.x.queued = false
				if lp.pump(r.x, 0) {
					lp.pump(r.x, 1)
				}
			}
		}
	}
}

// sweepIdle looks at the idle watch of every session: one that saw no byte for
// idleTicks looks in a row is ended (as idleWatch does on the goroutine path).
func (lp *loop) sweepIdle() {
	tick := max(lp.p.opts.Timeouts.TCPIdle/idleTicks, time.Millisecond)
	lp.nextSweep = lp.now + int64(tick)
	for _, l := range []*slist{&lp.young, &lp.old, &lp.halfClosed} {
		for x := l.head; x != nil; {
			next := x.next
			if x.idleWatch {
				if x.seen {
					x.seen, x.quiet = false, 0
				} else if x.quiet++; x.quiet >= idleTicks {
					lp.end(x)
				}
			}
			x = next
		}
	}
}

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

func (x *session) token(side int) unix.EpollEvent {
	return unix.EpollEvent{Events: sessionEvents, Fd: x.slot, Pad: int32(x.gen<<2) | int32(side)}
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

func (lp *loop) addListener(ls *lsock) {
	slot := int32(-1)
	for i, s := range lp.lsocks {
		if s == nil {
			slot = int32(i)
			break
		}
	}
	if slot < 0 {
		slot = int32(len(lp.lsocks))
		lp.lsocks = append(lp.lsocks, nil)
	}
	if lp.listen(ls, slot) != nil {
		lp.release(ls) // shut down already: nothing to serve
		return
	}
	lp.lsocks[slot] = ls
	ls.slots[lp.idx] = slot
}

// listen adds ls to the loop's epoll set: level-triggered, and exclusive, so that one
// loop (not all) wakes for a new client.
func (lp *loop) listen(ls *lsock, slot int32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: slot, Pad: kindListen}
	err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, ls.fd, &ev)
	if err == unix.EINVAL { // a kernel before 4.5: every loop wakes, one accepts
		ev.Events = unix.EPOLLIN
		err = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, ls.fd, &ev)
	}
	return err
}

// dropListener forgets ls in this loop.
func (lp *loop) dropListener(ls *lsock) {
	slot := ls.slots[lp.idx]
	if slot < 0 {
		return
	}
	ls.slots[lp.idx] = -1
	lp.lsocks[slot] = nil
	unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, ls.fd, nil)
	for i, pl := range lp.paused {
		if pl.ls == ls {
			lp.paused = append(lp.paused[:i], lp.paused[i+1:]...)
			break
		}
	}
	lp.release(ls)
}

// release lets go of ls; the last loop closes the socket.
func (lp *loop) release(ls *lsock) {
	ls.mu.Lock()
	ls.refs--
	last := ls.refs == 0
	ls.mu.Unlock()
	if last {
		unix.Close(ls.fd)
		ls.l.wg.Done()
	}
}

func (lp *loop) closeSessionsOf(l *listener) {
	for _, list := range []*slist{&lp.connecting, &lp.young, &lp.old, &lp.halfClosed} {
		for x := list.head; x != nil; {
			next := x.next
			if x.l == l {
				lp.end(x)
			}
			x = next
		}
	}
}

// accept takes the clients waiting on ls.
func (lp *loop) accept(ls *lsock, events uint32) {
	for i := 0; i < acceptBatch; i++ {
		fd, src, errno := accept4(ls.fd)
		switch errno {
		case 0:
		case unix.EAGAIN:
			return
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EINVAL: // shut down: closeListener's command follows
			lp.dropListener(ls)
			return
		default:
			// Out of descriptors and the like: stop watching the socket for a while
			// instead of spinning on it (it stays readable).
			lp.pause(ls, errno)
			return
		}
		if ls.backoff[lp.idx] != 0 {
			ls.backoff[lp.idx] = 0
		}
		lp.admit(ls, fd, src)
	}
}

func (lp *loop) pause(ls *lsock, errno syscall.Errno) {
	delay := min(max(2*ls.backoff[lp.idx], 5*time.Millisecond), time.Second)
	ls.backoff[lp.idx] = delay
	unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, ls.fd, nil)
	lp.p.log.Warn("accept failed", "config_id", ls.l.configID, "addr", ls.local.String(), "err", errno.Error(), "retry_in", delay)
	lp.paused = append(lp.paused, pausedListener{ls: ls, until: lp.now + int64(delay)})
}

func (lp *loop) resumeListeners() {
	kept := lp.paused[:0]
	for _, pl := range lp.paused {
		if lp.now < pl.until {
			kept = append(kept, pl)
			continue
		}
		lp.listen(pl.ls, pl.ls.slots[lp.idx])
	}
	lp.paused = kept
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
			ev := x.token(kindNode)
			if epollAdd(lp.epfd, fd, &ev) == 0 {
				x.n, x.nfd = n, fd
				lp.move(x, &lp.connecting)
				return
			}
			closeFD(fd)
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
	x.wr[1], x.hup[1], x.flow[1].readable = false, false, false
	x.gen++ // events of the closed socket are stale; re-register the client's
	ev := x.token(kindClient)
	if unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, x.cfd, &ev) != nil {
		lp.end(x)
		return
	}
	lp.dial(x)
}

// connected starts moving bytes once the node has taken the connection.
func (lp *loop) connected(x *session) {
	be := x.n.Data.(*backend)
	be.passiveSuccess()
	x.n.State.Acquire()
	be.stats.Active.Add(1)
	be.stats.Connections.Add(1)
	x.acquired, x.connected = true, true
	lp.move(x, &lp.young)
	if pp := x.s.cfg.ProxyProtocol; pp != model.ProxyProtocolNone {
		var hdr [64]byte
		var h []byte
		if pp == model.ProxyProtocolV1 {
			h = proxyproto.AppendV1(hdr[:0], x.src, x.local)
		} else {
			h = proxyproto.AppendV2(hdr[:0], x.src, x.local)
		}
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
				lp.connected(x)
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
			x.wr[1-d] = false
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
		w, errno := write(x.fd(1-d), b[:n])
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
			x.wr[1-d] = false
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

// closeReset closes a socket with a reset (SO_LINGER 0): a client refused or dropped.
func closeReset(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	closeFD(fd)
}

// accept4 accepts a client of the listening socket lfd: non-blocking, close-on-exec,
// with its address (no getpeername, no allocation).
func accept4(lfd int) (int, netip.AddrPort, syscall.Errno) {
	var sa unix.RawSockaddrAny
	salen := uint32(unsafe.Sizeof(sa))
	fd, _, errno := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&sa)),
		uintptr(unsafe.Pointer(&salen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(fd), sockaddrAddrPort(&sa), 0
}

func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(b[0])<<8|uint16(b[1]))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), uint16(b[0])<<8|uint16(b[1]))
	}
	return netip.AddrPort{}
}

// putSockaddr writes a as a socket address into sa and returns its length.
func putSockaddr(sa *unix.RawSockaddrAny, a netip.AddrPort) uint32 {
	if a.Addr().Is4() {
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p.Family = unix.AF_INET
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		b[0], b[1] = byte(a.Port()>>8), byte(a.Port())
		p.Addr = a.Addr().As4()
		return unix.SizeofSockaddrInet4
	}
	p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
	p.Family = unix.AF_INET6
	b := (*[2]byte)(unsafe.Pointer(&p.Port))
	b[0], b[1] = byte(a.Port()>>8), byte(a.Port())
	p.Addr = a.Addr().As16()
	return unix.SizeofSockaddrInet6
}

// The calls below are on non-blocking descriptors and never wait, so they are made
// raw: without telling the scheduler a system call may block (which costs two
// runtime transitions per call, on every read and write of every session).

func read(fd int, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

func write(fd int, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// engineLoops is how many event loops the engine runs: one per P.
func engineLoops() int { return runtime.GOMAXPROCS(0) }

// adopt serves the sockets of l (a tcp config's) on the engine: each is duplicated
// out of its Go listener, which is closed (the socket itself stays open, listening).
// It reports false, changing nothing, when a socket cannot be taken over.
func (e *engine) adopt(l *listener) bool {
	fds := make([]int, 0, len(l.lns))
	for _, ln := range l.lns {
		rc, err := ln.SyscallConn()
		var fd int
		var derr error
		if err == nil {
			err = rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
		}
		if err == nil {
			err = derr
		}
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			l.plane.log.Error("tcp engine cannot take the listening socket; serving it with goroutines", "config_id", l.configID, "err", err)
			return false
		}
		// Accepted sockets inherit TCP_NODELAY from the listening one (Go sets it on
		// every accepted connection, one system call each): a small answer written
		// while an earlier one is unacknowledged leaves at once, not after the ACK.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		fds = append(fds, fd)
	}
	for i, ln := range l.lns {
		ln.Close() // Go's poller lets go of the socket; fds[i] keeps it listening
		l.socks = append(l.socks, e.serveListener(l, fds[i], l.addrs[i]))
	}
	l.eng = e
	return true
}

// epollWait0 returns the events ready in epfd without waiting.
func epollWait0(epfd int, evs []unix.EpollEvent) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

func epollAdd(epfd, fd int, ev *unix.EpollEvent) syscall.Errno {
	_, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errno
}

func closeFD(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }

func shutdownWrite(fd int) { syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), syscall.SHUT_WR, 0) }

func setNoDelay(fd int) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// rawSplice moves up to max bytes from in to out without blocking.
func rawSplice(in, out, max int) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(max), spliceNonblock|spliceMove)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
