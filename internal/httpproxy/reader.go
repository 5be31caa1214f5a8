package httpproxy

// Hot path: buffered reads and deadline bookkeeping for both sides of every exchange.

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// errBufferFull reports that a head does not fit in the read buffer.
var errBufferFull = errors.New("httpproxy: read buffer full")

// connReader is a read buffer over a connection. Heads are parsed in place in buf, so
// buf only moves (compacts) when more room is needed for the next read.
//
// Buffers start at initialReadBuffer and grow to max (a client's head limit, a
// backend's backendBufferSize) only when a head does not fit, or when one read fills
// the buffer whole (a body streaming through: bigger reads then cost fewer calls). Most
// heads and small bodies fit in 4 KiB, and thousands of exchanges in flight each hold
// a client's and a backend's buffer. max 0 means the buffer never grows.
type connReader struct {
	conn net.Conn
	buf  []byte
	r, w int
	max  int
	dl   deadline
}

// initialReadBuffer is the size read buffers start at (see connReader).
const initialReadBuffer = 4 << 10

// fitReadBuffer returns buf if it may serve a connection whose buffer grows to limit
// bytes (one that grew for a long head serves the next connection too), and a new
// buffer of the initial size otherwise: buf is nil, over limit, or smaller than a new
// one would be.
func fitReadBuffer(buf []byte, limit int) []byte {
	if len(buf) > limit || len(buf) < min(limit, initialReadBuffer) {
		return make([]byte, min(limit, initialReadBuffer))
	}
	return buf
}

// grow moves the buffered bytes to the front of a buffer of max bytes.
func (cr *connReader) grow() {
	nb := make([]byte, cr.max)
	cr.w = copy(nb, cr.buf[cr.r:cr.w])
	cr.r, cr.buf = 0, nb
}

func (cr *connReader) buffered() []byte { return cr.buf[cr.r:cr.w] }
func (cr *connReader) n() int           { return cr.w - cr.r }
func (cr *connReader) consume(n int)    { cr.r += n }

// fill reads once from the connection into the free end of the buffer, first moving
// unread bytes to the front when the end is full.
func (cr *connReader) fill() (int, error) {
	if cr.r == cr.w {
		cr.r, cr.w = 0, 0
	} else if cr.w == len(cr.buf) {
		switch {
		case cr.r > 0:
			cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
			cr.r = 0
		case len(cr.buf) < cr.max:
			cr.grow()
		default:
			return 0, errBufferFull
		}
	}
	n, err := cr.conn.Read(cr.buf[cr.w:])
	cr.w += n
	if n == len(cr.buf) && n < cr.max {
		cr.grow() // a body streaming through
	}
	if n > 0 {
		err = nil // use what arrived; a sticky error shows again on the next read
	}
	return n, err
}

// room returns how much the next fill may read.
func (cr *connReader) room() int {
	if cr.r == cr.w {
		return len(cr.buf)
	}
	if cr.w == len(cr.buf) {
		if cr.r == 0 && len(cr.buf) < cr.max {
			return cr.max - cr.w // the fill grows the buffer first
		}
		return len(cr.buf) - (cr.w - cr.r)
	}
	return len(cr.buf) - cr.w
}

// rawFill is fill for a callback of syscall.RawConn.Read: one non-blocking read of fd.
// It returns syscall.EAGAIN when nothing is there, io.EOF at the end.
func (cr *connReader) rawFill(fd int) (int, error) {
	if cr.r == cr.w {
		cr.r, cr.w = 0, 0
	} else if cr.w == len(cr.buf) {
		switch {
		case cr.r > 0:
			cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
			cr.r = 0
		case len(cr.buf) < cr.max:
			cr.grow()
		default:
			return 0, errBufferFull
		}
	}
	for {
		n, err := sysRead(fd, cr.buf[cr.w:])
		switch {
		case n > 0:
			cr.w += n
			return n, nil
		case err == syscall.EINTR:
			continue
		case err == nil:
			return 0, io.EOF
		}
		return 0, err
	}
}

// deadlineSlack lets consecutive requests reuse a deadline instead of resetting the
// runtime timer for each one: a deadline is only set again when the wanted one is more
// than the slack later. Timeouts thus fire up to the slack late (this, or a sixteenth
// of the timeout if less), never early.
const deadlineSlack = 500 * time.Millisecond

// deadline remembers the last deadline set on one direction of a connection.
type deadline struct{ t time.Time }

// want returns the time to set for a wait of d from now, or the zero time (meaning
// "nothing to do") when the current deadline already fits.
func (dl *deadline) want(now time.Time, d time.Duration) (time.Time, bool) {
	if d <= 0 {
		if dl.t.IsZero() {
			return time.Time{}, false
		}
		dl.t = time.Time{}
		return time.Time{}, true
	}
	slack := min(deadlineSlack, d/16)
	w := now.Add(d)
	if !dl.t.IsZero() && !dl.t.Before(w) && dl.t.Sub(w) <= slack {
		return time.Time{}, false
	}
	dl.t = w.Add(slack)
	return dl.t, true
}

// forget makes the next want set a deadline (after someone else changed it).
func (dl *deadline) forget() { dl.t = time.Unix(1, 0) }

func setReadDeadline(c net.Conn, dl *deadline, now time.Time, d time.Duration) {
	if t, ok := dl.want(now, d); ok {
		c.SetReadDeadline(t)
	}
}

func setWriteDeadline(c net.Conn, dl *deadline, now time.Time, d time.Duration) {
	if t, ok := dl.want(now, d); ok {
		c.SetWriteDeadline(t)
	}
}

// aLongTimeAgo is a deadline in the past, to abort pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rawSend writes a request and waits for the first bytes of the answer within one
// poller registration. Through net.Conn, the read that follows a write finds nothing
// yet (EAGAIN) before it waits: a wasted system call per request. Here the wait starts
// right after the write; anything that arrives after the registration (which precedes
// the write) wakes it, so nothing is missed. It is used only on connections where
// nothing is expected before the request: fresh or briefly pooled backend connections.
type rawSend struct {
	rc syscall.RawConn
	fn func(uintptr) bool // step, bound once
	r  *connReader

	out        []byte // to send
	written    int    // of out
	wrote      bool   // the write phase is over
	werr, rerr error

	peekFn func(uintptr) bool // peek, bound once
	dead   bool               // peek's answer
}

// peek is closedWhileIdle's callback: one non-blocking read into the (empty) buffer,
// which never waits. Bytes, the end of the stream or an error all make the connection
// unusable for a new request.
func (x *rawSend) peek(fd uintptr) bool {
	r := x.r
	r.r, r.w = 0, 0
	for {
		n, err := sysRead(int(fd), r.buf)
		if err == syscall.EINTR {
			continue
		}
		x.dead = err != syscall.EAGAIN || n > 0
		return true
	}
}

// exchange sends out and reads the first bytes of the answer into r. It returns with
// written < len(out) and no error when the socket buffer was full (the caller sends
// the rest), with werr set when the write failed and with rerr or err set when the read
// failed or timed out (under r's read deadline).
func (x *rawSend) exchange(out []byte) (err error) {
	x.out, x.written, x.wrote, x.werr, x.rerr = out, 0, false, nil, nil
	err = x.rc.Read(x.fn)
	x.out = nil
	return err
}

func (x *rawSend) step(fd uintptr) bool {
	if !x.wrote {
		x.wrote = true
		for x.written < len(x.out) {
			n, err := sysWrite(int(fd), x.out[x.written:])
			if n > 0 {
				x.written += n
			}
			switch err {
			case nil:
			case syscall.EINTR:
			case syscall.EAGAIN:
				return true // the caller sends the rest with a blocking write
			default:
				x.werr = err
				return true
			}
		}
		return false // wait for the answer
	}
	r := x.r
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
	for {
		n, err := sysRead(int(fd), r.buf[r.w:])
		switch {
		case n > 0:
			r.w += n
			return true
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err == nil:
			err = io.EOF
		}
		x.rerr = err
		return true
	}
}
