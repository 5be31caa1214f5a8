package httpproxy

// Hot path: buffered reads and deadline bookkeeping for both sides of every exchange.

import (
	"errors"
	"net"
	"time"
)

// errBufferFull reports that a head does not fit in the read buffer.
var errBufferFull = errors.New("httpproxy: read buffer full")

// connReader is a read buffer over a connection. Heads are parsed in place in buf, so
// buf only moves (compacts) when more room is needed for the next read.
type connReader struct {
	conn net.Conn
	buf  []byte
	r, w int
	dl   deadline
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
		if cr.r == 0 {
			return 0, errBufferFull
		}
		cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
		cr.r = 0
	}
	n, err := cr.conn.Read(cr.buf[cr.w:])
	cr.w += n
	if n > 0 {
		err = nil // use what arrived; a sticky error shows again on the next read
	}
	return n, err
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
