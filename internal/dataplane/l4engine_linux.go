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
//     (EPOLLERR says it failed: SO_ERROR is never read) or, with a PROXY header to
//     send, by writing it right after connect returns (on loopback the connect has
//     completed by then), client sockets added without EPOLLOUT (watched for it once
//     found full) so that adding them queues no event, and sockets closed without
//     epoll_ctl DEL (closing the only descriptor leaves the set);
//   - epoll's EPOLLRDHUP is read: a short read that follows it is the end of the
//     stream, without the read that would return 0; a short read ends a wake-up
//     (edge-triggered: more data is a new edge), so no read finds nothing in the
//     usual exchange; bytes read with the end go on with it (one segment, data and
//     FIN);
//   - timers are lists in start order (connect, keep-alive on the node's socket after
//     keepAliveAfter, half-close), looked at when the loop wakes: no timer per session.
//
// A loop touches only its own sessions; what others ask of it (a listener to serve or
// forget, a listener's sessions to close) goes through its command queue and eventfd.
// The per-session path (l4session_linux.go) takes no lock: counters are the same
// atomics the goroutine path adds to. Its system calls are in l4sys_linux.go.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	// sessionEvents are what a session's sockets are watched for; EPOLLOUT is added
	// to a socket once it has been found full, or while its connect is awaited.
	sessionEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
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
	// ownWait is Options.TCPOwnWait in nanoseconds: how long a loop waits in its own
	// epoll set for more before parking in Go's poller; spin is Options.TCPBusyPoll,
	// how long it looks there without sleeping first. Both 0: it parks at once.
	ownWait, spin int64
}

// ownRunBudget bounds how long a loop keeps its P while it waits in its own epoll set
// (loop.serve): after that long since it was woken it parks in Go's poller even with
// events pending, so that the scheduler runs other goroutines and polls the network
// for them (at GOMAXPROCS=1 nothing else would, but sysmon every 10 ms).
const ownRunBudget = 250 * time.Microsecond

// newEngine starts n event loops.
func newEngine(p *Plane, n int) (*engine, error) {
	e := &engine{p: p, epoch: time.Now(), keepAliveAfter: keepAliveAfter, ownWait: int64(p.opts.TCPOwnWait), spin: int64(p.opts.TCPBusyPoll)}
	if e.ownWait > 0 && !canWaitFor() {
		p.log.Warn("tcp engine: epoll_pwait2 not available (Linux 5.11); loops do not wait in their own set")
		e.ownWait = 0
	}
	if a := p.opts.BackendSource; a.IsValid() {
		e.srcLen = putSockaddr(&e.src, netip.AddrPortFrom(a, 0))
	}
	for i := 0; i < n; i++ {
		lp, err := newLoop(e, i)
		if err != nil {
			for _, lp := range e.loops {
				lp.close()
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
	e    *engine
	p    *Plane
	idx  int
	epfd int
	// file is the descriptor registered in Go's poller, where the loop parks: epfd
	// itself, or with an own wait (engine.ownWait) a second epoll set, the bell,
	// which holds epfd only while the loop is parked (belled), so that readiness on
	// the sessions' sockets goes through no second set while the loop runs.
	file   *os.File
	rc     syscall.RawConn // of file
	bell   int             // file's descriptor with an own wait, else -1
	belled bool
	// woke is when the loop last came out of Go's poller (loop clock): with an own
	// wait, it parks again ownRunBudget after.
	woke  int64
	armed int64 // file's read deadline (loop clock), 0 when none
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
	// The set Go's poller watches: epfd, or the bell holding it.
	pfd, bell := epfd, -1
	if e.ownWait > 0 || e.spin > 0 {
		if bell, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			unix.Close(epfd)
			unix.Close(wfd)
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		pfd = bell
	}
	// os.NewFile registers a non-blocking descriptor with Go's poller.
	var rc syscall.RawConn
	f := (*os.File)(nil)
	if err = unix.SetNonblock(pfd, true); err == nil {
		f = os.NewFile(uintptr(pfd), "epoll")
		rc, err = f.SyscallConn()
	}
	if err != nil {
		if f != nil {
			f.Close()
		} else {
			unix.Close(pfd)
		}
		if bell >= 0 {
			unix.Close(epfd)
		}
		unix.Close(wfd)
		return nil, fmt.Errorf("epoll set in the poller: %w", err)
	}
	lp := &loop{e: e, p: e.p, idx: idx, epfd: epfd, file: f, rc: rc, bell: bell, wakefd: wfd, events: make([]unix.EpollEvent, maxEvents),
		buf: copyBufPool.Get().(*[]byte)}
	if bell >= 0 {
		if err := lp.ring(); err != 0 {
			lp.close()
			return nil, fmt.Errorf("epoll_ctl bell: %w", err)
		}
	}
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
	lp.close()
	copyBufPool.Put(lp.buf)
}

// close closes the loop's descriptors: the set in Go's poller (through its file, which
// takes it out of the poller), the loop's own set when that is another, the eventfd.
func (lp *loop) close() {
	lp.file.Close()
	if lp.bell >= 0 {
		unix.Close(lp.epfd)
	}
	unix.Close(lp.wakefd)
}

// ring puts the loop's epoll set into the bell, before the loop parks in Go's poller:
// the set's readiness (already there, or to come) then makes the bell readable.
func (lp *loop) ring() syscall.Errno {
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := epollAdd(lp.bell, lp.epfd, &ev); err != 0 && err != unix.EEXIST {
		return err
	}
	lp.belled = true
	return 0
}

// unring takes the set out of the bell once the loop runs: until it parks again,
// readiness on its sockets wakes only a wait in the set itself, with no second-level
// callback, and no thread blocked in Go's poller is woken for it.
func (lp *loop) unring() {
	epollDel(lp.bell, lp.epfd)
	lp.belled = false
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
//
// With an own wait (engine.ownWait), the loop does not park when it runs out of
// events: it waits in its own set (epoll_pwait2, raw, keeping its P) for up to
// ownWait, and parks in Go's poller only when that passes with nothing, or when
// ownRunBudget has passed since it was woken (other goroutines then run, and the
// scheduler polls the network for them). Under load a wake-up is then one wait in the
// loop's own set: no trip through Go's poller and scheduler, no second-level epoll
// callback (the set is in the bell only while parked).
func (lp *loop) serve() bool {
	own := lp.bell >= 0
	if own {
		if lp.belled {
			lp.unring()
		}
		lp.clock()
		lp.woke = lp.now
	}
	wait := false // the next look at the set may wait (own wait only)
	for {
		var n int
		var errno syscall.Errno
		idle := false // the own wait found nothing
		if wait {
			n, errno, idle = lp.waitOwn()
		} else {
			n, errno = epollWait0(lp.epfd, lp.events)
		}
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
		if n == len(lp.events) || len(lp.again) > 0 {
			wait = false // more may be ready now
			continue
		}
		if !own || idle || lp.now-lp.woke >= int64(ownRunBudget) {
			if own {
				if err := lp.ring(); err != 0 {
					lp.pollErr = err
					return true
				}
			}
			lp.arm()
			return false
		}
		wait = true
	}
}

// waitOwn looks for events in the loop's own set, keeping the P: first without
// sleeping for up to engine.spin (busy polling), then waiting for up to
// engine.ownWait (sooner when a timer is due first). idle reports that both passed
// with nothing.
func (lp *loop) waitOwn() (n int, errno syscall.Errno, idle bool) {
	e := lp.e
	if e.spin > 0 {
		for until := lp.now + e.spin; ; {
			if n, errno = epollWait0(lp.epfd, lp.events); n != 0 || errno != 0 {
				return n, errno, false
			}
			lp.clock()
			if lp.now >= until || lp.now-lp.woke >= int64(ownRunBudget) {
				break
			}
		}
	}
	d := e.ownWait
	if d == 0 {
		return 0, 0, true
	}
	if next := lp.next(); next >= 0 && next-lp.now < d {
		d = max(next-lp.now, 0) // a timer comes first
	}
	n, errno = epollWaitFor(lp.epfd, lp.events, d)
	return n, errno, n == 0 && errno == 0 && d == e.ownWait
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

// canWaitFor reports whether the kernel has epoll_pwait2 (the own wait's).
func canWaitFor() bool {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(epfd)
	var evs [1]unix.EpollEvent
	_, errno := epollWaitFor(epfd, evs[:], 0)
	return errno == 0
}

// engineLoops is how many event loops the engine runs: one per P.
func engineLoops() int { return runtime.GOMAXPROCS(0) }

// dupListener returns a duplicate of ln's descriptor (close-on-exec) for the caller to
// own once ln is closed: how the engine and the raw http accept take a listening
// socket over from Go.
func dupListener(ln *net.TCPListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// adopt serves the sockets of l (a tcp config's) on the engine: each is duplicated
// out of its Go listener, which is closed (the socket itself stays open, listening).
// It reports false, changing nothing, when a socket cannot be taken over.
func (e *engine) adopt(l *listener) bool {
	fds := make([]int, 0, len(l.lns))
	for _, ln := range l.lns {
		fd, err := dupListener(ln)
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
