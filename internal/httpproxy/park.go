package httpproxy

// Parking: an idle keep-alive connection on plain TCP waits for its next request with
// no goroutine, no clientConn and no buffer. Its descriptor sits in an epoll set of a
// poller (park_linux.go); when bytes arrive the poller hands it to a worker that
// serves it again. An idle connection then costs its socket, Go's own descriptor
// state and a 128-byte parkConn instead of a goroutine stack, a clientConn and its
// header tables.

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// States of a parkConn.
const (
	parkActive   = iota // a goroutine serves it
	parkNotified        // active, and the poller saw bytes arrive: read before parking
	parkParked          // no goroutine; the poller wakes it on readiness
	parkClosed          // closed, or being closed by whoever won the state
)

// parkConn is a client connection served by ServeConnAsync. It lives as long as the
// connection; the clientConn that serves it is borrowed from the pool while it is
// active and given back when it parks.
type parkConn struct {
	// It is kept small (128 bytes): thousands of idle connections hold one each.
	stops *stopSet // the Server and the graceful stop, shared by its connections
	c     *net.TCPConn
	rc    syscall.RawConn
	local *netip.AddrPort // interned by stopSet: one per listener address
	done  func()          // the caller's, once, when the connection is closed

	// state decides who owns the connection: only the goroutine that moved it to
	// parkActive (or started it) serves it, only the one that moved it to parkClosed
	// closes it.
	state    atomic.Int32
	stopped  atomic.Bool  // the context was cancelled: no more parking, idle means close
	deadline atomic.Int64 // unix ns after which a parked connection is closed; 0 never

	// The write deadline last set on the socket (unix ns), kept across clientConns
	// so that a resumed connection does not set it again for every request. No read
	// deadline is left set while parked.
	wdl int64

	mu sync.Mutex  // guards cc against the stop callback
	cc *clientConn // serving the connection, while active

	p     *poller // whose epoll set holds the descriptor; nil before the first park
	slot  int32   // in p's table
	shard uint8   // of stops holding it
	begun bool    // a request has started on the connection (clientConn.first is false)

	prev, next *parkConn // in the stop set's shard (guarded by the shard's lock)
}

// SetParking turns parking of idle plain-TCP keep-alive connections on or off for
// connections served by ServeConnAsync from now on (on by default where supported:
// Linux). Off, each connection keeps its goroutine while idle, as ServeConn does.
func (s *Server) SetParking(on bool) { s.noPark.Store(!on) }

// Parking reports whether ServeConnAsync parks idle connections.
func (s *Server) Parking() bool { return parkSupported && !s.noPark.Load() }

// ServeConnAsync serves c as ServeConn does, but may return while c is still open:
// a plain TCP connection (*net.TCPConn) that waits for its next request with nothing
// buffered is parked, without a goroutine, and served again on a new goroutine when
// bytes arrive. done is called exactly once, after c is closed. TLS and other
// net.Conns (and every connection when parking is off) are served by ServeConn on
// the calling goroutine, then done is called.
//
// The parked wait keeps ServeConn's rules: the keep-alive idle timeout closes it
// (checked every parkSweep, so up to that much late), and cancelling ctx closes it at
// once. A connection is parked only between requests (or before its first one, then
// closed silently after the header timeout), never with part of a head, a body or an
// upgrade in progress.
func (s *Server) ServeConnAsync(ctx context.Context, c net.Conn, local netip.AddrPort, done func()) {
	tc, ok := c.(*net.TCPConn)
	var rc syscall.RawConn
	if ok && s.Parking() {
		var err error
		if rc, err = tc.SyscallConn(); err != nil {
			ok = false
		}
	}
	if !ok || rc == nil {
		s.ServeConn(ctx, c, local)
		done()
		return
	}
	pc := &parkConn{c: tc, rc: rc, done: done, slot: -1}
	s.stopSetFor(ctx).add(pc, local)
	pc.serve()
}

// serve runs on the goroutine that owns pc (state parkActive or parkNotified) until
// the connection parks or closes.
func (pc *parkConn) serve() {
	for {
		cc := pc.attach(!pc.begun)
		if cc == nil {
			pc.finish()
			return
		}
		park, ok := pc.run(cc)
		pc.mu.Lock()
		pc.cc = nil
		pc.mu.Unlock()
		if !ok {
			// A recovered panic: the connection state may be inconsistent, so cc is
			// not recycled.
			pc.finish()
			return
		}
		pc.begun = !cc.first
		pc.wdl = 0
		if !cc.wdl.t.IsZero() {
			pc.wdl = cc.wdl.t.UnixNano()
		}
		cc.release()
		if !park {
			pc.finish()
			return
		}
		if pc.park() {
			return
		}
	}
}

// attach gives pc a clientConn, or returns nil when the connection was stopped.
func (pc *parkConn) attach(first bool) *clientConn {
	s := pc.stops.s
	cc := newClientConnFor(s, pc.c, *pc.local, s.cfg.Load().MaxHeaderBytes, addrPortOf(pc.c.RemoteAddr()), pc.rc)
	cc.pc, cc.first = pc, first
	if pc.wdl != 0 {
		cc.wdl.t = time.Unix(0, pc.wdl)
	}
	pc.mu.Lock()
	pc.cc = cc
	stopped := pc.stopped.Load()
	pc.mu.Unlock()
	if stopped {
		pc.mu.Lock()
		pc.cc = nil
		pc.mu.Unlock()
		cc.release()
		return nil
	}
	return cc
}

// run serves pc's connection with cc until it is to park (park) or to close; ok is
// false after a recovered panic.
func (pc *parkConn) run(cc *clientConn) (park, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			pc.stops.s.logger.Error("httpproxy: internal error serving connection", "panic", p, "client", pc.c.RemoteAddr().String())
			park, ok = false, false
		}
	}()
	return cc.serveRaw(), true
}

// park hands the connection to its poller. It returns false when the connection is
// to be served again at once: bytes arrived after the last read (the poller saw them
// while it was active), or it cannot be put in an epoll set.
func (pc *parkConn) park() bool {
	if pc.p == nil {
		if err := register(pc); err != nil {
			// No epoll set for it: serve on as ServeConn does.
			parkFailure.Do(func() {
				pc.stops.s.logger.Warn("httpproxy: cannot park an idle connection; it keeps its goroutine", "err", err)
			})
			pc.serveUnparked()
			return true
		}
	}
	if h := testParkHook.Load(); h != nil {
		(*h)(pc)
	}
	if !pc.state.CompareAndSwap(parkActive, parkParked) {
		// parkNotified: the socket may hold bytes the last read did not see.
		pc.state.Store(parkActive)
		return false
	}
	// A stop that ran before the state changed found the connection active and left
	// it to us; one that runs after closes it itself.
	if pc.stopped.Load() && pc.state.CompareAndSwap(parkParked, parkClosed) {
		pc.finish()
	}
	return true
}

// serveUnparked serves the connection on this goroutine until it closes.
func (pc *parkConn) serveUnparked() {
	cc := pc.attach(!pc.begun)
	if cc == nil {
		pc.finish()
		return
	}
	cc.pc = nil
	_, ok := pc.run(cc) // a connection without pc never parks
	pc.mu.Lock()
	pc.cc = nil
	pc.mu.Unlock()
	if ok {
		cc.release()
	}
	pc.finish()
}

// wake is the poller's: bytes (or the end) arrived on the connection.
func (pc *parkConn) wake() {
	for {
		switch pc.state.Load() {
		case parkParked:
			if pc.state.CompareAndSwap(parkParked, parkActive) {
				dispatch(pc)
				return
			}
		case parkActive:
			if pc.state.CompareAndSwap(parkActive, parkNotified) {
				return
			}
		default:
			return
		}
	}
}

// Workers serve woken connections: a bounded pool, so that many connections woken at
// once (thousands of keep-alive clients on a saturated proxy) wait in a queue, holding
// nothing, instead of each holding a goroutine stack and a clientConn with buffers. A
// goroutine whose connection parked takes the next queued one, or waits for one (up to
// maxIdleWorkers of them: handing a connection to a waiting goroutine costs less than
// starting one, whose stack then grows to what serving a request takes), or exits.
//
// A worker may wait long on a slow backend. So that slow backends cannot hold up every
// other connection, a poller starts one more worker, beyond maxWorkers, whenever the
// queue has not moved for workerStall.
type workersT struct {
	mu      sync.Mutex
	cond    sync.Cond
	q       []*parkConn // woken connections waiting for a worker, oldest at head
	head    int
	idle    int32 // waiting in cond.Wait and not yet signalled
	running int32
	queued  atomic.Int32  // len(q)-head, for the pollers' lock-free look
	served  atomic.Uint64 // connections workers finished with (parked or closed)
}

var workers workersT

var (
	maxWorkers     = int32(256 * runtime.GOMAXPROCS(0))
	maxIdleWorkers = int32(16 * runtime.GOMAXPROCS(0))
)

// workerStall is how long the queue may stand still before a poller adds a worker.
const workerStall = 5 * time.Millisecond

func init() { workers.cond.L = &workers.mu }

// dispatch has pc, just woken, served by a waiting worker, a new one, or the first
// worker free.
func dispatch(pc *parkConn) {
	w := &workers
	w.mu.Lock()
	switch {
	case w.idle > 0:
		w.push(pc)
		w.idle--
		w.mu.Unlock()
		w.cond.Signal()
	case w.running < maxWorkers:
		w.running++
		w.mu.Unlock()
		go worker(pc)
	default:
		w.push(pc)
		w.mu.Unlock()
	}
}

// push and pop keep the queue; workers.mu is held.
func (w *workersT) push(pc *parkConn) {
	w.q = append(w.q, pc)
	w.queued.Add(1)
}

func (w *workersT) pop() *parkConn {
	pc := w.q[w.head]
	w.q[w.head] = nil
	w.head++
	switch {
	case w.head == len(w.q):
		w.q, w.head = w.q[:0], 0
	case w.head >= 1024 && 2*w.head >= len(w.q):
		n := copy(w.q, w.q[w.head:])
		clear(w.q[n:])
		w.q, w.head = w.q[:n], 0
	}
	w.queued.Add(-1)
	return pc
}

// worker serves pc, then queued connections; it waits for more while fewer than
// maxIdleWorkers wait.
func worker(pc *parkConn) {
	w := &workers
	for {
		pc.serve()
		w.served.Add(1)
		w.mu.Lock()
		for len(w.q) == w.head {
			if w.idle >= maxIdleWorkers {
				w.running--
				w.mu.Unlock()
				return
			}
			w.idle++
			w.cond.Wait()
		}
		pc = w.pop()
		w.mu.Unlock()
	}
}

// unstall starts one more worker, beyond maxWorkers, for the oldest queued connection.
func unstall() {
	w := &workers
	w.mu.Lock()
	if len(w.q) == w.head {
		w.mu.Unlock()
		return
	}
	pc := w.pop()
	w.running++
	w.mu.Unlock()
	go worker(pc)
}

// expire is the poller's sweep: it closes the connection if it is parked past its
// deadline.
func (pc *parkConn) expire(now int64) bool {
	d := pc.deadline.Load()
	if d == 0 || now < d || pc.state.Load() != parkParked {
		return false
	}
	return pc.state.CompareAndSwap(parkParked, parkClosed)
}

// stop is the graceful-stop callback: a parked connection closes at once, an active
// one is stopped as ServeConn's are (its idle wait ends, a request in flight finishes
// with Connection: close).
func (pc *parkConn) stop() {
	pc.stopped.Store(true)
	if pc.state.CompareAndSwap(parkParked, parkClosed) {
		pc.finish()
		return
	}
	pc.mu.Lock()
	if pc.cc != nil {
		pc.cc.stop()
	}
	pc.mu.Unlock()
}

// stopActive is stop's first half: an active connection learns of the stop.
func (pc *parkConn) stopActive() {
	pc.stopped.Store(true)
	pc.mu.Lock()
	if pc.cc != nil {
		pc.cc.stop()
	}
	pc.mu.Unlock()
}

// finish closes the connection and tells the caller; it runs once, on whoever owns
// or closed the connection.
func (pc *parkConn) finish() {
	pc.state.Store(parkClosed)
	pc.c.Close()
	if pc.p != nil {
		pc.p.unregister(pc)
	}
	pc.stops.remove(pc)
	pc.done()
}

// stopSet is the parkConns served under one context: one context.AfterFunc stops them
// all, instead of one registration per connection (a few hundred bytes each, which
// idle connections would hold). Its lists are sharded like the data plane's connSet:
// a connection takes one shard's lock when it opens and when it closes.
type stopSet struct {
	s      *Server
	ctx    context.Context
	next   atomic.Uint32
	shards [16]struct {
		mu      sync.Mutex
		stopped bool
		head    *parkConn
	}
	locals sync.Map // netip.AddrPort -> *netip.AddrPort, the listener addresses
}

// stopSetFor returns s's stop set for ctx, made (and registered with ctx) on first
// use. A set lives as long as its context: when ctx ends it is dropped.
func (s *Server) stopSetFor(ctx context.Context) *stopSet {
	if ss := s.lastStops.Load(); ss != nil && ss.ctx == ctx {
		return ss // the usual case: every connection of a listener has its context
	}
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if ss := s.stopSets[ctx]; ss != nil {
		return ss
	}
	ss := &stopSet{s: s, ctx: ctx}
	if s.stopSets == nil {
		s.stopSets = map[context.Context]*stopSet{}
	}
	s.stopSets[ctx] = ss
	s.lastStops.Store(ss)
	context.AfterFunc(ctx, func() {
		s.stopMu.Lock()
		delete(s.stopSets, ctx)
		s.lastStops.CompareAndSwap(ss, nil)
		s.stopMu.Unlock()
		ss.stopAll()
	})
	return ss
}

// add puts pc in the set (marking it stopped when the set's context has ended) and
// gives it the interned local address.
func (ss *stopSet) add(pc *parkConn, local netip.AddrPort) {
	l, ok := ss.locals.Load(local)
	if !ok {
		l, _ = ss.locals.LoadOrStore(local, &local)
	}
	pc.local = l.(*netip.AddrPort)
	i := uint8(ss.next.Add(1) % uint32(len(ss.shards)))
	sh := &ss.shards[i]
	pc.stops, pc.shard = ss, i
	sh.mu.Lock()
	if sh.stopped {
		sh.mu.Unlock()
		pc.stopped.Store(true)
		return
	}
	pc.next = sh.head
	if sh.head != nil {
		sh.head.prev = pc
	}
	sh.head = pc
	sh.mu.Unlock()
}

func (ss *stopSet) remove(pc *parkConn) {
	sh := &ss.shards[pc.shard]
	sh.mu.Lock()
	if pc.prev != nil {
		pc.prev.next = pc.next
	} else if sh.head == pc {
		sh.head = pc.next
	}
	if pc.next != nil {
		pc.next.prev = pc.prev
	}
	pc.prev, pc.next = nil, nil
	sh.mu.Unlock()
}

// stopAll stops every connection of the set: first every active one learns of the
// stop (its request in flight ends with Connection: close), then parked ones close.
// In that order, no response written after the first close can miss the stop.
func (ss *stopSet) stopAll() {
	var all []*parkConn
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		sh.stopped = true
		for pc := sh.head; pc != nil; pc = pc.next {
			all = append(all, pc)
		}
		sh.mu.Unlock()
	}
	for _, pc := range all {
		pc.stopActive()
	}
	for _, pc := range all {
		pc.stop()
	}
}

// parkAt records, for the poller's sweep, when a connection parked now must close:
// after the wait's timeout (keep-alive idle, or the header timeout before the first
// request) from the end of the last response (or now).
func (pc *parkConn) parkAt(end time.Time, idle time.Duration) {
	if idle <= 0 {
		pc.deadline.Store(0)
		return
	}
	pc.deadline.Store(end.Add(idle).UnixNano())
}

// testParkHook, set by tests only, runs on a connection's goroutine just before it
// parks.
var testParkHook atomic.Pointer[func(*parkConn)]

// parkFailure logs the first failure to park, not one per connection.
var parkFailure sync.Once

// parkSweep is how often pollers close parked connections whose idle timeout passed.
const parkSweep = 500 * time.Millisecond
