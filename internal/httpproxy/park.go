package httpproxy

// Parking: an idle keep-alive connection on plain TCP waits for its next request with
// no goroutine, no clientConn and no buffer. Its descriptor sits in an epoll set of a
// poller (park_linux.go); when bytes arrive the poller hands it to a worker that
// serves it again. An idle connection then costs its socket (a raw descriptor, not in
// Go's poller: fdconn.go) and a 112-byte parkConn instead of a goroutine stack, a
// clientConn and its header tables.

import (
	"context"
	"net"
	"net/netip"
	"os"
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

// parkConn is a client connection served by ServeFD (or ServeConnAsync). It lives as
// long as the connection; the clientConn that serves it is borrowed from the pool
// while it is active and given back when it parks.
//
// The socket is a raw non-blocking descriptor, never in Go's poller: a parked
// connection is its descriptor and this struct, nothing else (no netFD, no
// *net.TCPConn, no addresses, no runtime pollDesc). While active it is read and
// written through the clientConn's fdConn (fdconn.go), which waits for readiness
// through the same poller that wakes the connection when parked.
type parkConn struct {
	// It is kept small (112 bytes, TestParkConnSize): thousands of idle connections
	// hold one each.
	stops *stopSet        // the Server and the graceful stop, shared by its connections
	local *netip.AddrPort // interned by stopSet: one per listener address
	done  func()          // the caller's, once, when the connection is closed

	// fc is the fdConn serving the connection while it is active (nil while
	// parked): the poller wakes its waits. A stale one (given back since) only gets
	// a spurious wake-up, which its waits tolerate.
	fc atomic.Pointer[fdConn]

	mu sync.Mutex  // guards cc against the stop callback, and fd against closing
	cc *clientConn // serving the connection, while active

	prev, next *parkConn // in the stop set's shard (guarded by the shard's lock)

	deadline atomic.Int64 // unix ns after which a parked connection is closed; 0 never

	// state decides who owns the connection: only the goroutine that moved it to
	// parkActive (or started it) serves it, only the one that moved it to parkClosed
	// closes it.
	state atomic.Int32
	fd    int32 // the socket; -1 once closed (under mu)

	slot  int32  // in the poller's table
	pi    uint16 // the poller whose epoll set holds the descriptor, as 1 + its index; 0 before the first wait
	shard uint8  // of stops holding it
	begun bool   // a request has started on the connection (clientConn.first is false)

	// The client's address, kept as bytes rather than a netip.AddrPort (32 bytes
	// with its zone pointer): it keeps the struct in the 112-byte size class.
	raddr   [16]byte
	rport   uint16
	r4      bool        // raddr holds an IPv4 address (in its first four bytes)
	pollOut bool        // the registration includes EPOLLOUT (after a write found the socket full)
	stopped atomic.Bool // the context was cancelled: no more parking, idle means close
}

// remote returns the client's address.
func (pc *parkConn) remote() netip.AddrPort {
	if pc.r4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(pc.raddr[:4])), pc.rport)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(pc.raddr), pc.rport)
}

func (pc *parkConn) setRemote(a netip.AddrPort) {
	ip := a.Addr().Unmap()
	pc.r4, pc.rport = ip.Is4(), a.Port()
	if pc.r4 {
		b := ip.As4()
		copy(pc.raddr[:], b[:])
	} else {
		pc.raddr = ip.As16()
	}
}

// SetParking turns parking of idle plain-TCP keep-alive connections on or off for
// connections served by ServeConnAsync from now on (on by default where supported:
// Linux). Off, each connection keeps its goroutine while idle, as ServeConn does.
func (s *Server) SetParking(on bool) { s.noPark.Store(!on) }

// Parking reports whether ServeConnAsync parks idle connections.
func (s *Server) Parking() bool { return parkSupported && !s.noPark.Load() }

// ServeConnAsync serves c as ServeConn does, but may return while c is still open:
// a plain TCP connection (*net.TCPConn) is taken out of Go's poller (its descriptor
// duplicated, c closed: a few system calls, once) and served by ServeFD. done is called
// exactly once, after the connection is closed. TLS and other net.Conns (and every
// connection when parking is off) are served by ServeConn on the calling goroutine,
// then done is called. The data plane accepts plain http connections raw and calls
// ServeFD itself; this is for callers that hold a net.Conn.
func (s *Server) ServeConnAsync(ctx context.Context, c net.Conn, local netip.AddrPort, done func()) {
	tc, ok := c.(*net.TCPConn)
	fd := -1
	if ok && s.Parking() {
		fd = detachFD(tc)
	}
	if fd < 0 {
		s.ServeConn(ctx, c, local)
		done()
		return
	}
	remote := addrPortOf(tc.RemoteAddr())
	tc.Close()
	s.ServeFD(ctx, fd, remote, local, done)
}

// ServeFD serves the plain TCP client connection fd (a non-blocking, close-on-exec
// socket, accepted from remote on local; the Server owns it from now on) as ServeConn
// does, but returns when the connection waits for its next request with nothing
// buffered: it is then parked, without a goroutine, and served again on a worker when
// bytes arrive. done is called exactly once, after fd is closed. Only where Parking
// is possible (Linux); elsewhere fd is served through a net.Conn made of it.
//
// The parked wait keeps ServeConn's rules: the keep-alive idle timeout closes it
// (checked every parkSweep, so up to that much late), and cancelling ctx closes it at
// once. A connection is parked only between requests (or before its first one, then
// closed silently after the header timeout), never with part of a head, a body or an
// upgrade in progress.
func (s *Server) ServeFD(ctx context.Context, fd int, remote, local netip.AddrPort, done func()) {
	if !parkSupported {
		s.serveFDConn(ctx, fd, local, done)
		return
	}
	pc := &parkConn{done: done, slot: -1, fd: int32(fd)}
	pc.setRemote(remote)
	s.stopSetFor(ctx).add(pc, local)
	pc.serve()
}

// serveFDConn serves fd through a net.Conn of Go's, with ServeConn.
func (s *Server) serveFDConn(ctx context.Context, fd int, local netip.AddrPort, done func()) {
	defer done()
	f := os.NewFile(uintptr(fd), "client")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	s.ServeConn(ctx, c, local)
}

// serve runs on the goroutine that owns pc (state parkActive or parkNotified) until
// the connection parks or closes.
func (pc *parkConn) serve() {
	for {
		cc := pc.attach(!pc.begun, pc.begun && pc.wokeSoon(time.Now()))
		if cc == nil {
			pc.finish()
			return
		}
		park, ok := pc.run(cc)
		pc.fc.Store(nil)
		pc.mu.Lock()
		pc.cc = nil
		pc.mu.Unlock()
		if cc.gof != nil && pc.leaveGo(cc) != nil {
			park = false // not back in the epoll set: it could not wait there
		}
		if !ok {
			// A recovered panic: the connection state may be inconsistent, so cc is
			// not recycled.
			pc.finish()
			return
		}
		pc.begun = !cc.first
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

// attach gives pc a clientConn, reading and writing the socket through the
// clientConn's fdConn, or through Go's poller when hot (see hotWithin), or returns nil
// when the connection was stopped.
func (pc *parkConn) attach(first, hot bool) *clientConn {
	s := pc.stops.s
	cc := newClientConnFor(s, nil, *pc.local, s.cfg.Load().MaxHeaderBytes, pc.remote(), nil)
	if !hot || pc.enterGo(cc) != nil {
		pc.fc.Store(cc.bindFD(pc))
	}
	cc.pc, cc.first = pc, first
	pc.mu.Lock()
	pc.cc = cc
	stopped := pc.stopped.Load()
	pc.mu.Unlock()
	if stopped {
		pc.fc.Store(nil)
		pc.mu.Lock()
		pc.cc = nil
		pc.mu.Unlock()
		if cc.gof != nil {
			pc.leaveGo(cc) // the connection closes: whether it is back in the set does not matter
		}
		cc.release()
		return nil
	}
	return cc
}

// A connection woken within hotWithin of its last response is hot: its client sends
// requests back to back. Served hot, it waits for its next request in Go's poller, on
// its own goroutine (enterGo: a duplicate of its descriptor there, the descriptor out
// of the parking epoll set meanwhile), so that the request goes straight to that
// goroutine instead of through the poller's hand-off to a worker: one scheduling hop
// and one trip through the run queue fewer per request. A wait that lasts hotWithin
// ends it: the connection leaves Go's poller (leaveGo) and parks as any other. A
// connection idle longer than that between requests (thousands of slow keep-alive
// clients) never becomes hot, so it holds no goroutine while idle. At most half a
// poller's workers serve hot connections at once (workerPool.hot): the others are
// served as before.
const hotWithin = 10 * time.Millisecond

// wokeSoon reports whether pc, being served again after it parked, was woken within
// hotWithin of its last response: the park's deadline is that response's time plus
// the idle timeout (parkAt).
func (pc *parkConn) wokeSoon(now time.Time) bool {
	d, idle := pc.deadline.Load(), pc.stops.s.cfg.Load().Timeouts.ClientIdle
	if d == 0 || idle <= 0 || testNoHot.Load() {
		return false
	}
	return now.UnixNano()-(d-int64(idle)) < int64(hotWithin)
}

// run serves pc's connection with cc until it is to park (park) or to close; ok is
// false after a recovered panic.
func (pc *parkConn) run(cc *clientConn) (park, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			pc.stops.s.logger.Error("httpproxy: internal error serving connection", "panic", p, "client", pc.remote().String())
			park, ok = false, false
		}
	}()
	return cc.serveRaw(), true
}

// park hands the connection to its poller. It returns false when the connection is
// to be served again at once: bytes arrived after the last read (the poller saw them
// while it was active). One that cannot be put in an epoll set is closed.
func (pc *parkConn) park() bool {
	if pc.pi == 0 {
		if err := pc.pollFor(false); err != nil {
			// No epoll set for it: it cannot wait for its next request (an fdConn
			// waits through the same set), so it closes, as at a full descriptor table.
			parkFailure.Do(func() {
				pc.stops.s.logger.Warn("httpproxy: cannot register an idle connection for readiness; closing it", "err", err)
			})
			pc.finish()
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

// wake is the poller's: bytes (or the end) arrived on the connection (in), which w's
// workers serve, or room to write (out), which only a waiting write wants.
func (pc *parkConn) wake(w *workerPool, in, out bool) {
	if fc := pc.fc.Load(); fc != nil {
		fc.notify(in, out)
	}
	if !in {
		return
	}
	for {
		switch pc.state.Load() {
		case parkParked:
			if pc.state.CompareAndSwap(parkParked, parkActive) {
				w.dispatch(pc)
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

// Workers serve woken connections: a bounded pool per poller, so that many connections
// woken at once (thousands of keep-alive clients on a saturated proxy) wait in a queue,
// holding nothing, instead of each holding a goroutine stack and a clientConn with
// buffers. A goroutine whose connection parked takes the next queued one, or waits for
// one (up to its pool's share of maxIdleWorkers: handing a connection to a waiting
// goroutine costs less than starting one, whose stack then grows to what serving a
// request takes), or exits.
//
// No lock is shared across connections: only the pool's poller pushes to its queue (a
// ring of atomic slots that workers take from with a compare-and-swap), and a waiting
// worker sits in an idle slot on its own channel, which only the poller sends to.
// Whoever publishes last looks at the other side (the poller pushes, then looks for
// idle workers; a worker takes an idle slot, then looks at the queue), so a queued
// connection never waits while a worker idles.
//
// A worker may wait long on a slow backend. So that slow backends cannot hold up every
// other connection, a poller starts one more worker, beyond its share of maxWorkers,
// whenever its queue has not moved for workerStall.
type workerPool struct {
	head atomic.Uint64 // the next queued connection to take; workers advance it by CAS
	_    [56]byte      // head is written by workers, tail by the poller
	tail atomic.Uint64 // the next free position; stored by the poller only
	ring atomic.Pointer[workRing]

	idle    []atomic.Pointer[worker] // waiting workers
	nidle   atomic.Int32             // about how many idle slots are taken: 0 means none
	running atomic.Int32
	max     atomic.Int32  // workers started other than for a stall
	served  atomic.Uint64 // connections workers finished with (parked or closed)
	hot     atomic.Int32  // connections of this poller served hot (enterGo): at most max/2 (takeHot)
}

// workRing holds the queue: position i is in slots[i&mask]. It grows (by the poller,
// into a new ring) when full; a worker still reading the old one finds the same
// connections there, at the same positions.
type workRing struct {
	mask  uint64
	slots []atomic.Pointer[parkConn]
}

// worker is one goroutine of a pool; wake hands it a connection (or nil: look at the
// queue) while it sits in an idle slot.
type worker struct {
	wake chan *parkConn
}

var (
	maxWorkers     = int32(256 * runtime.GOMAXPROCS(0))
	maxIdleWorkers = int32(16 * runtime.GOMAXPROCS(0))
)

// workerStall is how long the queue may stand still before a poller adds a worker.
const workerStall = 5 * time.Millisecond

// newWorkerPool makes the pool of one of n pollers: its share of maxWorkers and
// maxIdleWorkers.
func newWorkerPool(n int) *workerPool {
	w := &workerPool{idle: make([]atomic.Pointer[worker], max(1, int(maxIdleWorkers)/n))}
	w.max.Store(max(1, maxWorkers/int32(n)))
	w.ring.Store(&workRing{mask: 255, slots: make([]atomic.Pointer[parkConn], 256)})
	return w
}

// dispatch is the poller's: it has pc, just woken, served by a waiting worker, a new
// one, or the first worker free.
func (w *workerPool) dispatch(pc *parkConn) {
	if wk := w.claimIdle(); wk != nil {
		wk.wake <- pc
		return
	}
	if w.tryRun() {
		go w.work(pc)
		return
	}
	w.push(pc)
	// A worker may have gone idle, or exited, after the looks above and before the
	// push: it then did not see pc, so look again.
	if wk := w.claimIdle(); wk != nil {
		wk.wake <- nil
		return
	}
	if w.tryRun() {
		go w.work(nil)
	}
}

// claimIdle takes a waiting worker out of its idle slot, or returns nil.
func (w *workerPool) claimIdle() *worker {
	if w.nidle.Load() <= 0 {
		return nil
	}
	for i := range w.idle {
		if wk := w.idle[i].Load(); wk != nil && w.idle[i].CompareAndSwap(wk, nil) {
			w.nidle.Add(-1)
			return wk
		}
	}
	return nil
}

// tryRun counts one more running worker, unless the pool has its maximum.
func (w *workerPool) tryRun() bool {
	for {
		r := w.running.Load()
		if r >= w.max.Load() {
			return false
		}
		if w.running.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// push is the poller's only: it queues pc.
func (w *workerPool) push(pc *parkConn) {
	t := w.tail.Load()
	r := w.ring.Load()
	if t-w.head.Load() > r.mask {
		g := &workRing{mask: 2*r.mask + 1, slots: make([]atomic.Pointer[parkConn], 2*len(r.slots))}
		for i := w.head.Load(); i < t; i++ {
			g.slots[i&g.mask].Store(r.slots[i&r.mask].Load())
		}
		w.ring.Store(g)
		r = g
	}
	r.slots[t&r.mask].Store(pc)
	w.tail.Store(t + 1)
}

// pop takes the oldest queued connection, or returns nil when none is queued.
func (w *workerPool) pop() *parkConn {
	for {
		h := w.head.Load()
		if h >= w.tail.Load() {
			return nil
		}
		r := w.ring.Load()
		s := &r.slots[h&r.mask]
		pc := s.Load()
		if w.head.CompareAndSwap(h, h+1) {
			// The slot cannot hold pc again before pc is served: clearing it only
			// lets a closed connection be collected.
			s.CompareAndSwap(pc, nil)
			return pc
		}
	}
}

// queued reports how many connections wait for a worker.
func (w *workerPool) queued() uint64 {
	h := w.head.Load()
	return w.tail.Load() - h
}

// work is a worker: it serves pc (if any), then queued connections; it waits for
// more in an idle slot while one is free, or exits.
func (w *workerPool) work(pc *parkConn) {
	wk := &worker{wake: make(chan *parkConn, 1)}
	for {
		if pc != nil {
			pc.serve()
			w.served.Add(1)
		}
		if pc = w.pop(); pc != nil {
			continue
		}
		i := w.idleSlot(wk)
		if i < 0 {
			w.running.Add(-1)
			// The poller may have queued one after it saw this worker running.
			if w.queued() == 0 || !w.tryRun() {
				return
			}
			continue
		}
		// The poller may have queued one after it looked for idle workers.
		if w.queued() > 0 && w.idle[i].CompareAndSwap(wk, nil) {
			w.nidle.Add(-1)
			continue
		}
		pc = <-wk.wake
	}
}

// idleSlot puts wk in a free idle slot and returns it, or -1 when none is free.
func (w *workerPool) idleSlot(wk *worker) int {
	for i := range w.idle {
		if w.idle[i].Load() == nil && w.idle[i].CompareAndSwap(nil, wk) {
			w.nidle.Add(1)
			return i
		}
	}
	return -1
}

// unstall starts one more worker, beyond the maximum, for the oldest queued
// connection.
func (w *workerPool) unstall() {
	if pc := w.pop(); pc != nil {
		w.running.Add(1)
		go w.work(pc)
	}
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
	pc.mu.Lock()
	fd := pc.fd
	pc.fd = -1
	if fd >= 0 {
		// Closing the only descriptor of the socket also takes it out of the epoll
		// set. Under mu, so that interrupt never shuts down a reused descriptor.
		syscall.Close(int(fd))
	}
	pc.mu.Unlock()
	if pc.pi != 0 {
		pc.poller().unregister(pc)
	}
	pc.stops.remove(pc)
	pc.done()
}

// interrupt ends an active connection under the goroutine serving it: the socket is
// shut down both ways (its waits and system calls end: reads find the end, writes
// fail) and its fdConn marked closed; the descriptor itself is closed by finish, on
// the serving goroutine, so that its number cannot be reused under it.
func (pc *parkConn) interrupt() {
	pc.mu.Lock()
	if pc.fd >= 0 {
		syscall.Shutdown(int(pc.fd), syscall.SHUT_RDWR)
	}
	// pc.cc (and so its fdConn) is this connection's while mu is held: pc.fc could
	// already be another's.
	if pc.cc != nil && pc.cc.fdc != nil {
		pc.cc.fdc.Close()
	}
	pc.mu.Unlock()
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
		// CloseConns still needs the set while connections stopped in it finish; empty
		// ones are dropped here.
		kept := s.ended[:0]
		for _, e := range s.ended {
			if !e.empty() {
				kept = append(kept, e)
			}
		}
		clear(s.ended[len(kept):])
		s.ended = append(kept, ss)
		s.stopMu.Unlock()
		ss.stopAll()
	})
	return ss
}

// CloseConns closes every connection served by ServeConnAsync that is still open,
// whatever its context: a parked one at once (its done runs here), an active one by
// closing its socket under the goroutine serving it (its done runs there). It is the
// end of a graceful stop whose grace is over; the caller needs no list of its own.
func (s *Server) CloseConns() {
	s.stopMu.Lock()
	sets := make([]*stopSet, 0, len(s.stopSets)+len(s.ended))
	for _, ss := range s.stopSets {
		sets = append(sets, ss)
	}
	sets = append(sets, s.ended...)
	s.stopMu.Unlock()
	for _, ss := range sets {
		for _, pc := range ss.all(false) {
			pc.stopped.Store(true)
			if pc.state.CompareAndSwap(parkParked, parkClosed) {
				pc.finish()
				continue
			}
			pc.interrupt()
		}
	}
}

// empty reports whether no connection is left in the set.
func (ss *stopSet) empty() bool {
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		h := sh.head
		sh.mu.Unlock()
		if h != nil {
			return false
		}
	}
	return true
}

// all lists the connections in the set; stop marks the set stopped as well, so that
// no connection joins it afterwards.
func (ss *stopSet) all(stop bool) []*parkConn {
	var all []*parkConn
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		if stop {
			sh.stopped = true
		}
		for pc := sh.head; pc != nil; pc = pc.next {
			all = append(all, pc)
		}
		sh.mu.Unlock()
	}
	return all
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
	all := ss.all(true)
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

// testNoHot, set by tests only, keeps every connection from becoming hot: each
// parks after each request, as before hot connections existed.
var testNoHot atomic.Bool

// parkFailure logs the first failure to park, not one per connection.
var parkFailure sync.Once

// parkSweep is how often pollers close parked connections whose idle timeout passed.
const parkSweep = 500 * time.Millisecond
