package health

// This file is the check engine: connection and http checks run on one epoll set
// driven by one goroutine, as HAProxy runs its checks, instead of a goroutine, a
// Go dial and the runtime's poller per check.
//
// What a check costs is mostly what the kernel does for it, so the engine makes
// the system calls HAProxy makes and no more: a connection check is socket,
// setsockopt (TCP_QUICKACK off), connect, epoll_ctl, setsockopt (SO_LINGER 0) and
// close; an http check adds one write and one read. The rest is shared by every
// check that is due or ready at once: one epoll_wait harvests them all.
//
// What is left is Go's scheduler, which cost more than the checks themselves
// until the engine stopped doing three things:
//   - blocking in a system call of its own (epoll_wait): the thread then holds its
//     P in a system call, the runtime's monitor (sysmon) polls every 20 µs to take
//     it back, and each return hands the goroutine between threads. The epoll set
//     is registered with Go's netpoller instead (an epoll descriptor is readable
//     when one of its sockets is ready), so the goroutine parks as network reads
//     do and the runtime's one epoll_pwait wakes it;
//   - sleeping on a Go timer: a timer that readies a goroutine also wakes a second
//     thread to look for work. The next due check is a timerfd in the epoll set,
//     so every wake-up of the engine is network readiness, which the waking thread
//     runs itself;
//   - entering the scheduler for each system call: syscall.Syscall wakes a
//     sleeping sysmon, which then polls every 20 µs for a millisecond. Every call
//     the engine makes returns at once (non-blocking sockets, epoll_wait with no
//     timeout, close with SO_LINGER 0), so it makes them as raw system calls.
//
// Wake-ups for due checks are rounded up to a tick of the wall clock so that
// checks due within a few milliseconds of each other start in one pass.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// engineTick is the grain of the engine's timer: a check starts at most this
// late, and checks due within one tick start together. It is far below the
// jitter of a check at Linode's intervals (100 ms at 2 s) and saves a wake-up per
// check.
const engineTick = 5 * time.Millisecond

// engineMaxPark bounds one sleep of the engine while checks are scheduled, so
// that a lost wake-up (there should be none) cannot stall them for long.
const engineMaxPark = time.Second

// engine runs non-blocking checks on an epoll set.
type engine struct {
	c      *Checker
	epfd   int
	file   *os.File        // epfd, registered with Go's netpoller
	poll   syscall.RawConn // file's, to park on it
	timer  int             // a timerfd in the epoll set: when the next check is due
	wakeR  int             // a pipe: the scheduler writes a byte when it queued checks
	wakeW  int
	woken  atomic.Bool
	source netip.Addr

	// The engine goroutine's only.
	armed   time.Time     // when timer fires; zero: stopped
	passes  atomic.Uint64 // times the engine woke to work (read by tests)
	byFD    []*op         // the checks in flight, by socket
	flight  []*op         // the same checks, for the deadline scan
	free    []*op         // finished ops, reused
	events  []syscall.EpollEvent
	req     []byte             // the request being written
	rbuf    [512]byte          // what a node answers is read here
	ready   []due              // due checks popped from the heap
	pollErr error              // harvest's failure
	pollFn  func(uintptr) bool // e.harvest, made once: a method value allocates
}

// op is one check in flight.
type op struct {
	d        due
	cs       *checkSpec
	base     time.Time
	fd       int
	at       int // index in engine.flight
	start    time.Time
	deadline time.Time
	reading  bool   // http: the request is sent, the status line awaited
	buf      []byte // http: an answer that came in pieces (rare)
}

// newEngine returns an engine, or nil when the system does not let it make one
// (the checks then run on goroutines).
func newEngine(c *Checker, source netip.Addr) *engine {
	e := &engine{c: c, source: source, epfd: -1, timer: -1, wakeR: -1, wakeW: -1,
		events: make([]syscall.EpollEvent, 256)}
	if err := e.open(); err != nil {
		c.log.Warn("health: no check engine; checks run on goroutines", "err", err)
		e.closeFDs()
		return nil
	}
	e.pollFn = e.harvest
	return e
}

// open makes the engine's epoll set, timer and wake-up pipe.
func (e *engine) open() error {
	var err error
	if e.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return err
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, uintptr(clockMonotonic), syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return fmt.Errorf("timerfd_create: %w", errno)
	}
	e.timer = int(r)
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return err
	}
	e.wakeR, e.wakeW = p[0], p[1]
	for _, fd := range []int{e.timer, e.wakeR} {
		// Edge-triggered: the timer need not be read, only set again.
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET, Fd: int32(fd)}
		if err := syscall.EpollCtl(e.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return err
		}
	}
	// Non-blocking, so that os.NewFile registers it with the netpoller.
	if err := syscall.SetNonblock(e.epfd, true); err != nil {
		return err
	}
	e.file = os.NewFile(uintptr(e.epfd), "health-epoll")
	e.epfd = -1 // the file's now
	if e.poll, err = e.file.SyscallConn(); err != nil {
		return err
	}
	// The netpoller knows the file if it has deadlines (the engine sets none).
	if err := e.file.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("epoll set not pollable: %w", err)
	}
	e.poll.Control(func(fd uintptr) { e.epfd = int(fd) })
	return nil
}

// closeFDs releases the engine's descriptors.
func (e *engine) closeFDs() {
	if e.file != nil {
		e.file.Close()
	} else if e.epfd >= 0 {
		syscall.Close(e.epfd)
	}
	for _, fd := range []int{e.timer, e.wakeR, e.wakeW} {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

// clockMonotonic is CLOCK_MONOTONIC, the clock of the engine's timer.
const clockMonotonic = 1

// epollET is EPOLLET as the uint32 of an event mask (syscall spells it negative).
const epollET = 1 << 31

// handles reports whether the engine runs checks of kind k.
func (e *engine) handles(k model.Check) bool {
	return k == model.CheckConnection || k == model.CheckHTTP
}

// wake makes the engine goroutine look at the heap again (a check was queued
// earlier than it waits for, or Run is ending). While the engine is awake it
// does nothing: the engine looks at the heap before it sleeps.
func (e *engine) wake() {
	if e.woken.CompareAndSwap(false, true) {
		syscall.Write(e.wakeW, []byte{1})
	}
}

// run is the scheduler when the engine exists: one goroutine that sleeps until the
// next check is due or a socket is ready, starts due checks (connection and http
// ones itself, the others on workers), advances those whose socket is ready and
// fails those past their timeout. One goroutine does all of it, so a check costs
// no goroutine switch.
func (e *engine) run(ctx context.Context) {
	defer e.close()
	stop := context.AfterFunc(ctx, e.wake)
	defer stop()
	c := e.c
	for {
		e.woken.Store(true) // enqueues from now on are seen by the pass below
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		c.schedMu.Lock()
		e.ready = e.ready[:0]
		for len(c.heap) > 0 && !c.heap[0].at.After(now) {
			e.ready = append(e.ready, c.heap.pop())
		}
		c.schedMu.Unlock()
		for i, d := range e.ready {
			if !e.begin(d, now) && !c.dispatch(ctx, d) {
				return
			}
			e.ready[i] = due{}
		}
		next := e.expire(time.Now())
		e.woken.Store(false)
		if ctx.Err() != nil {
			return
		}
		c.schedMu.Lock()
		if len(c.heap) > 0 && (next.IsZero() || c.heap[0].at.Before(next)) {
			next = c.heap[0].at // also what was queued after the pass above
		}
		c.schedMu.Unlock()
		e.arm(next)
		// Read calls harvest (it takes what is ready without waiting) and parks the
		// goroutine until the epoll set is readable. Checks started above have
		// often connected already (loopback): harvest finds them at once.
		e.pollErr = nil
		err := e.poll.Read(e.pollFn)
		if err == nil {
			err = e.pollErr
		}
		if err != nil {
			c.log.Error("health: check engine", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// arm sets the timer to fire at next, rounded up to a tick, and never more than
// engineMaxPark ahead; with next zero (nothing scheduled or in flight) it stops
// the timer, so an engine with nothing to check does not wake at all.
func (e *engine) arm(next time.Time) {
	now := time.Now()
	var spec [2]syscall.Timespec // it_interval zero: once; it_value zero: stopped
	if !next.IsZero() {
		if next.Sub(now) > engineMaxPark {
			next = now.Add(engineMaxPark)
		}
		if t := next.Truncate(engineTick); t.Before(next) {
			next = t.Add(engineTick)
		}
		if next.Equal(e.armed) && now.Before(next) {
			return // set already, and not yet fired
		}
		spec[1] = syscall.NsecToTimespec(int64(max(next.Sub(now), 1)))
	} else if e.armed.IsZero() {
		return // stopped already
	}
	e.armed = next
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(e.timer), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		e.c.log.Error("health: timerfd_settime", "err", errno)
		e.armed = time.Time{}
	}
}

// close ends every check in flight and releases the engine's descriptors.
func (e *engine) close() {
	for _, o := range e.flight {
		syscall.Close(o.fd)
	}
	e.flight = nil
	e.closeFDs()
}

// harvest takes the events that are ready, without waiting, and advances their
// checks. It reports false when there were none (the engine then sleeps).
func (e *engine) harvest(epfd uintptr) bool {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&e.events[0])), uintptr(len(e.events)), 0, 0, 0)
	switch {
	case errno == syscall.EINTR:
		return true
	case errno != 0:
		e.pollErr = fmt.Errorf("epoll_wait: %w", errno)
		return true
	case r == 0:
		return false
	}
	e.woken.Store(true) // the loop looks at the heap next
	e.passes.Add(1)
	for _, ev := range e.events[:r] {
		fd := int(ev.Fd)
		switch {
		case fd < len(e.byFD) && e.byFD[fd] != nil:
			e.advance(e.byFD[fd], ev.Events)
		case fd == e.wakeR:
			var b [64]byte
			for {
				if k, _ := rawRead(e.wakeR, b[:]); k <= 0 {
					break
				}
			}
		}
	}
	return true
}

// expire fails the checks past their timeout and returns the earliest deadline of
// the others (zero when none is in flight).
func (e *engine) expire(now time.Time) time.Time {
	var next time.Time
	for i := 0; i < len(e.flight); {
		o := e.flight[i]
		if now.After(o.deadline) {
			e.finish(o, fmt.Errorf("timed out after %v", o.cs.Timeout)) // moves another op to i
			continue
		}
		if next.IsZero() || o.deadline.Before(next) {
			next = o.deadline
		}
		i++
	}
	return next
}

// begin starts check d with a non-blocking connect to the node. It reports false
// when the check is not the engine's to run (it goes to a worker).
func (e *engine) begin(d due, now time.Time) bool {
	n := d.n
	n.mu.Lock()
	cs, base, gen := n.spec, n.base, n.gen
	n.mu.Unlock()
	if cs == nil || !e.handles(cs.Check) {
		return false
	}
	if gen != d.gen {
		return true // stopped or restarted since it was queued: nothing to run
	}
	if !n.addrOK {
		e.c.complete(d, cs, base, now, errBadAddress)
		return true
	}
	fd, err := e.connect(n.addr)
	if err != nil {
		e.c.complete(d, cs, base, now, err)
		return true
	}
	// Edge-triggered: one event when the connect ends, one when the answer comes,
	// and no epoll_ctl in between to stop the writable socket from reporting.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(e.epfd), syscall.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0); errno != 0 {
		rawClose(fd)
		e.c.complete(d, cs, base, now, fmt.Errorf("epoll_ctl: %w", errno))
		return true
	}
	var o *op
	if k := len(e.free); k > 0 {
		o, e.free = e.free[k-1], e.free[:k-1]
	} else {
		o = new(op)
	}
	*o = op{d: d, cs: cs, base: base, fd: fd, at: len(e.flight), start: now, deadline: now.Add(cs.Timeout), buf: o.buf[:0]}
	for fd >= len(e.byFD) {
		e.byFD = append(e.byFD, nil)
	}
	e.byFD[fd] = o
	e.flight = append(e.flight, o)
	return true
}

// quickAckOff is TCP_QUICKACK's 0: a connect does not acknowledge the node's
// SYN-ACK at once. A connection check then closes (with a reset) before the node's
// kernel has a connection to queue for its application, as HAProxy's does: the
// node's kernel answering the SYN is the check. An http check's request carries
// the acknowledgement.
var quickAckOff int32 = 0

// linger0 is SO_LINGER on with a zero timeout: close resets the connection.
var linger0 = syscall.Linger{Onoff: 1, Linger: 0}

// connect opens a non-blocking socket to addr (from the source address, when set)
// and starts connecting it.
func (e *engine) connect(addr netip.AddrPort) (int, error) {
	ip := addr.Addr().Unmap()
	family := syscall.AF_INET
	if ip.Is6() {
		family = syscall.AF_INET6
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(family), syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if errno != 0 {
		return -1, fmt.Errorf("socket: %w", errno)
	}
	fd := int(r)
	setsockopt(fd, syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, unsafe.Pointer(&quickAckOff), 4)
	if e.source.IsValid() {
		if err := sockcall(syscall.SYS_BIND, fd, netip.AddrPortFrom(e.source, 0), ip.Is6()); err != nil {
			rawClose(fd)
			return -1, fmt.Errorf("bind %s: %w", e.source, err)
		}
	}
	if err := sockcall(syscall.SYS_CONNECT, fd, netip.AddrPortFrom(ip, addr.Port()), ip.Is6()); err != nil && err != syscall.EINPROGRESS {
		rawClose(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}

// sockcall makes the bind or connect system call trap on fd with address a (as
// IPv6 when six), from a sockaddr on the stack: syscall.Connect would allocate
// one per check. A zone is not kept, as the checks' net.Dial did not keep it either.
func sockcall(trap uintptr, fd int, a netip.AddrPort, six bool) error {
	var errno syscall.Errno
	if six {
		sa := syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: a.Addr().As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], a.Port())
		_, _, errno = syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	} else {
		sa := syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: a.Addr().Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], a.Port())
		_, _, errno = syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}
	if errno != 0 {
		return errno
	}
	return nil
}

func setsockopt(fd, level, opt int, v unsafe.Pointer, size uintptr) {
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(v), size, 0)
}

func rawClose(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }

func rawRead(fd int, b []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), errno
}

// soError returns the socket's pending error (SO_ERROR).
func soError(fd int) error {
	var v int32
	size := uint32(4)
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_ERROR, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		return errno
	}
	if v == 0 {
		return syscall.ECONNRESET // reported as failed, with the error already taken
	}
	return syscall.Errno(v)
}

// advance moves a check on after its socket reported events.
func (e *engine) advance(o *op, events uint32) {
	if !o.reading {
		switch {
		case events&(syscall.EPOLLERR|syscall.EPOLLHUP) != 0:
			e.finish(o, fmt.Errorf("connect %s: %w", o.d.n.addr, soError(o.fd)))
			return
		case events&syscall.EPOLLOUT == 0:
			return // not connected yet
		case o.cs.Check == model.CheckConnection:
			e.finish(o, nil)
			return
		}
		if !e.request(o) {
			return
		}
		if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP) == 0 {
			return // the answer comes with a later event
		}
		// The node spoke first: what it sent will not be reported again.
	}
	for {
		k, errno := rawRead(o.fd, e.rbuf[:])
		switch {
		case errno == syscall.EAGAIN:
			return
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			e.finish(o, fmt.Errorf("read: %w", errno))
			return
		case k == 0:
			e.finish(o, errors.New("read status line: EOF"))
			return
		}
		b := e.rbuf[:k]
		if len(o.buf) > 0 {
			o.buf = append(o.buf, b...)
			b = o.buf
		}
		code, done, err := statusOf(b)
		switch {
		case err != nil:
			e.finish(o, err)
		case !done && len(b) > 16<<10:
			e.finish(o, errors.New("no status line in the first 16 KiB"))
		case !done: // the answer comes in pieces (rare): keep what came
			if len(o.buf) == 0 {
				o.buf = append(o.buf, b...)
			}
			continue
		case code < 200 || code > 399:
			e.finish(o, fmt.Errorf("status %d", code))
		default:
			e.finish(o, nil)
		}
		return
	}
}

// request sends the http check's request in one write. It reports false when
// that failed (the check is finished).
func (e *engine) request(o *op) bool {
	e.req = appendRequest(e.req[:0], o.d.n.addr, o.cs.Path)
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(o.fd), uintptr(unsafe.Pointer(&e.req[0])), uintptr(len(e.req)))
	if errno != 0 || int(r) != len(e.req) {
		var err error = errno
		if errno == 0 {
			err = errors.New("short write")
		}
		e.finish(o, fmt.Errorf("write request: %w", err))
		return false
	}
	o.reading = true
	return true
}

// finish closes the check's socket and records its result.
func (e *engine) finish(o *op, err error) {
	e.byFD[o.fd] = nil
	last := len(e.flight) - 1
	e.flight[o.at] = e.flight[last]
	e.flight[o.at].at = o.at
	e.flight[last] = nil
	e.flight = e.flight[:last]
	// Close with a reset, as HAProxy does: no FIN exchange and no TIME_WAIT for a
	// connection that carried nothing the node needs.
	setsockopt(o.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, unsafe.Pointer(&linger0), unsafe.Sizeof(linger0))
	rawClose(o.fd)
	d, cs, base, start := o.d, o.cs, o.base, o.start
	buf := o.buf[:0]
	if cap(buf) > 1<<10 {
		buf = nil // do not keep a large buffer for every later check
	}
	*o = op{buf: buf}
	e.free = append(e.free, o)
	e.c.complete(d, cs, base, start, err)
}

// statusOf finds the final status code in what a node answered so far: done is
// false while more is needed. Interim 1xx answers (other than 101) are skipped.
func statusOf(b []byte) (code int, done bool, err error) {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return 0, false, nil
		}
		code, ok := parseStatusLine(b[:i+1])
		if !ok {
			return 0, false, fmt.Errorf("malformed status line %q", bytes.TrimRight(b[:i+1], "\r\n"))
		}
		if code >= 200 || code == 101 {
			return code, true, nil
		}
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			return 0, false, nil
		}
		b = b[end+4:]
	}
}
