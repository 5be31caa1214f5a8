package dataplane

import (
	"math"
	"net"
	"sync/atomic"
	"time"
)

// idleTicks is how many quiet looks in a row end a session: the watch looks every
// timeout/idleTicks, so a session is ended after between 1 and 1+1/idleTicks times the
// timeout of silence.
const idleTicks = 4

// activity is what the two copies of a session tell the idle watch: that bytes moved.
type activity struct{ seen atomic.Uint32 }

// mark records that bytes moved. It reads before it writes, so that a busy session
// costs its copies a load per wake-up, not a locked write. A nil activity does
// nothing.
func (a *activity) mark() {
	if a != nil && a.seen.Load() == 0 {
		a.seen.Store(1)
	}
}

// idleWatch ends a tcp session that stays silent: one timer per session, which looks
// at the activity mark every tick, rather than a deadline reset on every read and
// write of both copies.
type idleWatch struct {
	activity
	tick    time.Duration
	quiet   int // looks in a row that saw nothing; only the timer's goroutine uses it
	stopped atomic.Bool
	t       atomic.Pointer[time.Timer] // atomic: the timer's own callback reads it
	a, b    *net.TCPConn
}

// watchIdle starts watching the session between a and b for timeout of silence.
func watchIdle(timeout time.Duration, a, b *net.TCPConn) *idleWatch {
	w := &idleWatch{tick: max(timeout/idleTicks, time.Millisecond), a: a, b: b}
	t := time.AfterFunc(time.Duration(math.MaxInt64), w.look) // armed below, once stored
	w.t.Store(t)
	t.Reset(w.tick)
	return w
}

func (w *idleWatch) look() {
	if w.stopped.Load() {
		return
	}
	if w.seen.Swap(0) != 0 {
		w.quiet = 0
	} else if w.quiet++; w.quiet >= idleTicks {
		// Wake both copies with a deadline in the past: the session ends as after a
		// reset (both sockets closed).
		w.a.SetDeadline(time.Unix(1, 0))
		w.b.SetDeadline(time.Unix(1, 0))
		return
	}
	w.t.Load().Reset(w.tick)
}

// stop ends the watch when the session ends.
func (w *idleWatch) stop() {
	w.stopped.Store(true)
	w.t.Load().Stop()
}
