package httpproxy

// Hot path: fdConn, the net.Conn of a plain TCP client connection served by ServeFD. Its
// socket is a raw non-blocking descriptor that never enters Go's poller; when a read or
// a write finds nothing to do (EAGAIN) it waits for the connection's poller
// (park_linux.go), the same epoll set that wakes the connection when it is parked. The
// descriptor is registered there once, edge-triggered, the first time it has to wait
// (EPOLLOUT only after a write first finds the socket full).
//
// Waits are rare: a keep-alive request is read and answered without one (a connection
// with nothing to read parks instead of waiting). They happen for the rest of a head or
// a body still arriving, a client slow to read a response, and tunnels.

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// fdConn reads and writes a parkConn's socket while the connection is active. It
// belongs to a clientConn (recycled with it) and serves one connection at a time.
//
// A read and a write may wait at once (a request body streamed while the response is
// written, a tunnel): each direction has its own deadline, wake-up channel and timer.
// A wake-up is a token in a one-slot channel, sent (never blocking) by the poller on
// readiness, by the deadline's timer, and by SetDeadline and Close while the direction
// waits. A token may be stale (readiness already consumed, a timer or a poller event of
// an earlier connection of this fdConn): the waiter then finds EAGAIN again and waits
// again, so a spurious wake-up costs a system call, never correctness. A token is
// never lost: readiness after the EAGAIN that precedes a wait is reported by the
// edge-triggered epoll set after it, and the channel keeps it until the wait.
type fdConn struct {
	pc *parkConn
	fd int

	closed       atomic.Bool
	rdl, wdl     atomic.Int64 // deadlines in unix ns; 0 none
	rwait, wwait atomic.Bool  // a read / a write waits: deadline changes and Close wake it
	rd, wr       chan struct{}

	// The timers of waits with a deadline, made on first use and kept; each is used
	// by its direction's goroutine only. rat, wat: the deadline each is set for.
	rt, wt   *time.Timer
	rat, wat int64
}

// fdRaw is an fdConn's syscall.RawConn (for serveRaw): a type of its own because
// RawConn's Read and Write are not net.Conn's.
type fdRaw fdConn

// bindFD makes cc read and write pc's socket through its fdConn.
func (cc *clientConn) bindFD(pc *parkConn) *fdConn {
	fc := cc.fdc
	if fc == nil {
		fc = &fdConn{rd: make(chan struct{}, 1), wr: make(chan struct{}, 1)}
		cc.fdc = fc
	}
	fc.pc, fc.fd = pc, int(pc.fd)
	fc.closed.Store(false)
	fc.rdl.Store(0)
	fc.wdl.Store(0)
	// Tokens of the last connection served would cost a read each.
	select {
	case <-fc.rd:
	default:
	}
	select {
	case <-fc.wr:
	default:
	}
	cc.c, cc.r.conn, cc.rc = fc, fc, (*fdRaw)(fc)
	if cc.rawFn == nil {
		cc.rawFn = cc.rawStep
	}
	cc.rawW.init(cc.rc) // writeAt writes through the RawConn when there is one
	return fc
}

// Read implements net.Conn.
func (fc *fdConn) Read(b []byte) (int, error) {
	if err := fc.ready(&fc.rdl); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, err := sysRead(fc.fd, b) // raw, as the keep-alive loop reads: see sysRead
		switch {
		case n > 0:
			return n, nil
		case err == nil:
			return 0, io.EOF
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if err = fc.wait(false); err == nil {
				continue
			}
		}
		return 0, err
	}
}

// Write implements net.Conn: it returns when all of b is written, or with how much
// was when it fails (deadline, Close, the client gone).
func (fc *fdConn) Write(b []byte) (int, error) {
	if err := fc.ready(&fc.wdl); err != nil {
		return 0, err
	}
	n := 0
	for n < len(b) {
		k, err := sysWrite(fc.fd, b[n:])
		switch {
		case k > 0:
			n += k
			continue
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if err = fc.wait(true); err == nil {
				continue
			}
		case err == nil:
			err = io.ErrShortWrite
		}
		return n, err
	}
	return n, nil
}

// ready reports the error a read or write (by its deadline dl) fails with before it
// starts: closed, or past the deadline.
func (fc *fdConn) ready(dl *atomic.Int64) error {
	if fc.closed.Load() {
		return net.ErrClosed
	}
	if d := dl.Load(); d != 0 && time.Now().UnixNano() >= d {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait blocks until the socket may be readable (or writable), the deadline passes or
// the connection is closed; nil means "try again".
func (fc *fdConn) wait(write bool) error {
	if err := fc.pc.pollFor(write); err != nil {
		return err
	}
	ch, dl, waiting := fc.rd, &fc.rdl, &fc.rwait
	if write {
		ch, dl, waiting = fc.wr, &fc.wdl, &fc.wwait
	}
	// Published before the deadline is read: a SetDeadline after this sees it and
	// wakes the wait; one before is read below.
	waiting.Store(true)
	defer waiting.Store(false)
	if err := fc.ready(dl); err != nil {
		return err
	}
	if d := dl.Load(); d != 0 {
		fc.arm(write, d)
	}
	<-ch
	return fc.ready(dl)
}

// arm sets the direction's timer to wake its wait at deadline d.
func (fc *fdConn) arm(write bool, d int64) {
	t, at, fire := &fc.rt, &fc.rat, fc.fireRead
	if write {
		t, at, fire = &fc.wt, &fc.wat, fc.fireWrite
	}
	if *t != nil && *at == d {
		return // set for this deadline, and not fired (or ready would have failed)
	}
	left := time.Duration(d - time.Now().UnixNano())
	if *t == nil {
		*t = time.AfterFunc(left, fire)
	} else {
		(*t).Reset(left)
	}
	*at = d
}

func (fc *fdConn) fireRead()  { poke(fc.rd) }
func (fc *fdConn) fireWrite() { poke(fc.wr) }

// poke leaves a wake-up token in ch unless one is there.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// notify is the poller's: the socket became readable (in) or writable (out).
func (fc *fdConn) notify(in, out bool) {
	if in {
		poke(fc.rd)
	}
	if out {
		poke(fc.wr)
	}
}

// Close implements net.Conn: reads and writes, waiting or not, fail from now on. The
// descriptor itself is closed by its parkConn (finish) once the serving goroutine
// lets go of it; parkConn.interrupt also shuts the socket down.
func (fc *fdConn) Close() error {
	fc.closed.Store(true)
	poke(fc.rd)
	poke(fc.wr)
	return nil
}

// CloseWrite shuts down the writing side (the end of a tunnel's one direction).
func (fc *fdConn) CloseWrite() error {
	return syscall.Shutdown(fc.fd, syscall.SHUT_WR)
}

// LocalAddr implements net.Conn (it allocates: not for the per-request path).
func (fc *fdConn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(*fc.pc.local) }

// RemoteAddr implements net.Conn (it allocates: not for the per-request path).
func (fc *fdConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(fc.pc.remote()) }

// SetDeadline implements net.Conn.
func (fc *fdConn) SetDeadline(t time.Time) error {
	fc.SetReadDeadline(t)
	return fc.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn: a waiting read sees the new deadline at once.
func (fc *fdConn) SetReadDeadline(t time.Time) error {
	fc.rdl.Store(unixNano(t))
	if fc.rwait.Load() {
		poke(fc.rd)
	}
	return nil
}

// SetWriteDeadline implements net.Conn: a waiting write sees the new deadline at once.
func (fc *fdConn) SetWriteDeadline(t time.Time) error {
	fc.wdl.Store(unixNano(t))
	if fc.wwait.Load() {
		poke(fc.wr)
	}
	return nil
}

// unixNano is t as a deadline: 0 for none (the zero time), at least 1 otherwise.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}

// SyscallConn implements syscall.Conn.
func (fc *fdConn) SyscallConn() (syscall.RawConn, error) { return (*fdRaw)(fc), nil }

// Control implements syscall.RawConn.
func (r *fdRaw) Control(f func(fd uintptr)) error {
	if r.closed.Load() {
		return net.ErrClosed
	}
	f(uintptr(r.fd))
	return nil
}

// Read implements syscall.RawConn: f is called until it returns true, waiting for the
// socket to become readable each time it returns false.
func (r *fdRaw) Read(f func(fd uintptr) bool) error { return (*fdConn)(r).rawIO(false, f) }

// Write implements syscall.RawConn, as Read for writability.
func (r *fdRaw) Write(f func(fd uintptr) bool) error { return (*fdConn)(r).rawIO(true, f) }

func (fc *fdConn) rawIO(write bool, f func(fd uintptr) bool) error {
	dl := &fc.rdl
	if write {
		dl = &fc.wdl
	}
	if err := fc.ready(dl); err != nil {
		return err
	}
	for !f(uintptr(fc.fd)) {
		if err := fc.wait(write); err != nil {
			return err
		}
	}
	return nil
}
