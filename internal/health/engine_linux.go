package health

// This file is the check engine: connection and http checks run on one epoll set
// driven by one goroutine, as HAProxy runs its checks, instead of a goroutine, a
// Go dial and the runtime's poller per check. A connection check is socket,
// connect, one readiness event, getsockopt and close; an http check adds one write
// and the reads of the status line.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// engine runs non-blocking checks on an epoll set.
type engine struct {
	c      *Checker
	epfd   int
	wakeR  int // a pipe: the scheduler writes a byte when it queued checks
	wakeW  int
	woken  atomic.Bool
	source netip.Addr

	ops map[int32]*op // by file descriptor; the engine goroutine's only
}

// op is one check in flight.
type op struct {
	d        due
	cs       *checkSpec
	base     time.Time
	fd       int
	start    time.Time
	deadline time.Time
	reading  bool   // http: the request is sent, the status line awaited
	buf      []byte // http: what the node answered so far
}

// newEngine returns an engine, or nil when the system does not let it make one
// (the checks then run on goroutines).
func newEngine(c *Checker, source netip.Addr) *engine {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil
	}
	return &engine{c: c, epfd: epfd, wakeR: p[0], wakeW: p[1], source: source, ops: map[int32]*op{}}
}

// handles reports whether the engine runs checks of kind k.
func (e *engine) handles(k model.Check) bool {
	return k == model.CheckConnection || k == model.CheckHTTP
}

// wake makes the engine goroutine look at the heap again (a check was queued
// earlier than it waits for). From the engine goroutine itself it does nothing:
// the loop looks again anyway.
func (e *engine) wake() {
	if e.woken.CompareAndSwap(false, true) {
		syscall.Write(e.wakeW, []byte{1})
	}
}

// run is the scheduler when the engine exists: one goroutine that sleeps in
// epoll_wait until the next check is due or a socket is ready, starts due checks
// (connection and http ones itself, the others on workers), advances those whose
// socket is ready and fails those past their timeout. One thread does all of it,
// so a check costs no goroutine switch.
func (e *engine) run(ctx context.Context) {
	defer syscall.Close(e.epfd)
	defer syscall.Close(e.wakeR)
	defer syscall.Close(e.wakeW)
	c := e.c
	events := make([]syscall.EpollEvent, 128)
	var ready []due
	for ctx.Err() == nil {
		e.woken.Store(true) // enqueues from now on are seen by the pass below
		now := time.Now()
		c.schedMu.Lock()
		ready = ready[:0]
		for len(c.heap) > 0 && !c.heap[0].at.After(now) {
			ready = append(ready, c.heap.pop())
		}
		next := now.Add(100 * time.Millisecond) // wake now and then to notice the end of Run
		if len(c.heap) > 0 && c.heap[0].at.Before(next) {
			next = c.heap[0].at
		}
		c.schedMu.Unlock()
		for i, d := range ready {
			d.n.mu.Lock()
			cs := d.n.spec
			d.n.mu.Unlock()
			if cs != nil && e.handles(cs.Check) {
				e.begin(d, now)
			} else if !c.dispatch(ctx, d) {
				return
			}
			ready[i] = due{}
		}
		for _, o := range e.ops {
			if o.deadline.Before(next) {
				next = o.deadline
			}
		}
		if len(ready) > 0 {
			continue // time went on while starting them
		}
		e.woken.Store(false)
		c.schedMu.Lock()
		if len(c.heap) > 0 && c.heap[0].at.Before(next) {
			next = c.heap[0].at // queued after the pass above
		}
		c.schedMu.Unlock()
		ms := int((time.Until(next) + time.Millisecond - 1) / time.Millisecond)
		n, err := syscall.EpollWait(e.epfd, events, max(ms, 0))
		if err != nil && !errors.Is(err, syscall.EINTR) {
			c.log.Error("health: epoll_wait", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == e.wakeR {
				var b [64]byte
				for {
					if k, _ := syscall.Read(e.wakeR, b[:]); k <= 0 {
						break
					}
				}
				continue
			}
			if o := e.ops[ev.Fd]; o != nil {
				e.advance(o, ev.Events)
			}
		}
		now = time.Now()
		for _, o := range e.ops {
			if now.After(o.deadline) {
				e.finish(o, fmt.Errorf("timed out after %v", o.cs.Timeout))
			}
		}
	}
	for _, o := range e.ops {
		syscall.Close(o.fd)
	}
}

// begin starts check d: a non-blocking connect to the node.
func (e *engine) begin(d due, now time.Time) {
	n := d.n
	n.mu.Lock()
	if n.gen != d.gen {
		n.mu.Unlock()
		return
	}
	cs, base := n.spec, n.base
	n.mu.Unlock()
	o := &op{d: d, cs: cs, base: base, fd: -1, start: now, deadline: now.Add(cs.Timeout)}
	if !n.addrOK {
		e.c.complete(o.d, o.cs, o.base, o.start, errBadAddress)
		return
	}
	fd, err := e.connect(n.addr)
	if err != nil {
		e.c.complete(o.d, o.cs, o.base, o.start, err)
		return
	}
	o.fd = fd
	ev := syscall.EpollEvent{Events: syscall.EPOLLOUT, Fd: int32(fd)}
	if err := syscall.EpollCtl(e.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		e.c.complete(o.d, o.cs, o.base, o.start, err)
		return
	}
	e.ops[int32(fd)] = o
}

// connect opens a non-blocking socket to addr (from the source address, when set)
// and starts connecting it.
func (e *engine) connect(addr netip.AddrPort) (int, error) {
	ip := addr.Addr().Unmap()
	family := syscall.AF_INET
	if ip.Is6() {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if e.source.IsValid() {
		if err := syscall.Bind(fd, sockaddr(netip.AddrPortFrom(e.source, 0), ip.Is6())); err != nil {
			syscall.Close(fd)
			return -1, fmt.Errorf("bind %s: %w", e.source, err)
		}
	}
	err = syscall.Connect(fd, sockaddr(netip.AddrPortFrom(ip, addr.Port()), ip.Is6()))
	if err != nil && !errors.Is(err, syscall.EINPROGRESS) {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}

func sockaddr(a netip.AddrPort, six bool) syscall.Sockaddr {
	if six {
		return &syscall.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}
	}
	return &syscall.SockaddrInet4{Addr: a.Addr().Unmap().As4(), Port: int(a.Port())}
}

// advance moves a check on after its socket became ready.
func (e *engine) advance(o *op, events uint32) {
	if !o.reading {
		soErr, err := syscall.GetsockoptInt(o.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
		switch {
		case err != nil:
			e.finish(o, err)
		case soErr != 0:
			e.finish(o, fmt.Errorf("connect %s: %w", o.d.n.addr, syscall.Errno(soErr)))
		case o.cs.Check == model.CheckConnection:
			e.finish(o, nil)
		default:
			e.request(o)
		}
		return
	}
	var b [512]byte
	k, err := syscall.Read(o.fd, b[:])
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return
	case err != nil:
		e.finish(o, fmt.Errorf("read: %w", err))
		return
	case k == 0:
		e.finish(o, errors.New("read status line: EOF"))
		return
	}
	o.buf = append(o.buf, b[:k]...)
	code, done, err := statusOf(o.buf)
	switch {
	case err != nil:
		e.finish(o, err)
	case !done:
		if len(o.buf) > 16<<10 {
			e.finish(o, errors.New("no status line in the first 16 KiB"))
		}
	case code < 200 || code > 399:
		e.finish(o, fmt.Errorf("status %d", code))
	default:
		e.finish(o, nil)
	}
}

// request sends the http check's request and waits for the answer.
func (e *engine) request(o *op) {
	req := appendRequest(nil, o.d.n.addr, o.cs.Path)
	if k, err := syscall.Write(o.fd, req); err != nil || k != len(req) {
		e.finish(o, fmt.Errorf("write request: %v", err))
		return
	}
	o.reading = true
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(o.fd)}
	if err := syscall.EpollCtl(e.epfd, syscall.EPOLL_CTL_MOD, o.fd, &ev); err != nil {
		e.finish(o, err)
	}
}

// finish closes the check's socket and records its result.
func (e *engine) finish(o *op, err error) {
	delete(e.ops, int32(o.fd))
	// Close with a reset, as HAProxy does: no FIN exchange and no TIME_WAIT for a
	// connection that carried nothing the node needs.
	syscall.SetsockoptLinger(o.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	syscall.Close(o.fd)
	e.c.complete(o.d, o.cs, o.base, o.start, err)
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
