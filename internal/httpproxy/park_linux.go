//go:build linux

package httpproxy

// The pollers of parked connections: a few goroutines, each owning one epoll set in
// which parked connections' descriptors are registered once, edge-triggered. A poller
// does not block a thread: its epoll descriptor is itself registered in Go's poller,
// so the poller goroutine waits as any network read does and drains its set with
// non-blocking epoll_wait calls, made raw (sysio_linux.go), when the set becomes
// readable.

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// parkSupported reports whether this platform can park connections.
const parkSupported = true

// poller owns one epoll set of parked connections.
type poller struct {
	epfd int
	f    *os.File
	rc   syscall.RawConn

	// mu guards conns and free: taken once per connection when it is first parked
	// and when it closes, once per batch of events by the poller, and by the sweep.
	mu    sync.Mutex
	conns []*parkConn // by slot; the slot is the epoll event's data
	free  []int32

	events  [128]unix.EpollEvent
	batch   [128]*parkConn
	bits    [128]uint32
	expired []*parkConn

	pool *workerPool // serves its woken connections

	// The stall check of the worker queue (see workerPool).
	served   uint64
	servedAt time.Time
	swept    time.Time
}

var pollers struct {
	once sync.Once
	ps   []*poller
	err  error
	next atomic.Uint32
}

// startPollers starts one poller per four Ps (at least one): one goroutine dispatches
// readiness for far more connections than a P can serve.
func startPollers() {
	n := min((runtime.GOMAXPROCS(0)+3)/4, 1<<16-1) // parkConn.pi names one in 16 bits
	for range n {
		p, err := newPoller(n)
		if err != nil {
			pollers.err = err
			break
		}
		pollers.ps = append(pollers.ps, p)
		go p.run()
	}
}

func newPoller(n int) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	// A non-blocking descriptor goes into Go's poller, which supports deadlines on it.
	f := os.NewFile(uintptr(epfd), "httpproxy-park")
	if err := f.SetReadDeadline(time.Now().Add(parkSweep)); err != nil {
		f.Close()
		return nil, errors.New("httpproxy: an epoll set cannot be polled: " + err.Error())
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &poller{epfd: epfd, f: f, rc: rc, pool: newWorkerPool(n)}, nil
}

// pollFor makes sure pc's descriptor is in a poller's epoll set, with EPOLLOUT when
// out is set, before a wait: registered once, edge-triggered (EPOLLOUT added the first
// time a write waits, so that other connections get no writability events), it
// reports only new bytes, the end, or new room; the descriptor leaves the set when it
// is closed. Adding (or modifying) a registration reports readiness that is already
// there, so nothing that arrived before is missed.
func (pc *parkConn) pollFor(out bool) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.fd < 0 {
		return net.ErrClosed
	}
	if pc.pi == 0 {
		return register(pc, out)
	}
	if out && !pc.pollOut {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: pc.slot}
		if err := unix.EpollCtl(pc.poller().epfd, unix.EPOLL_CTL_MOD, int(pc.fd), &ev); err != nil {
			return err
		}
		pc.pollOut = true
	}
	return nil
}

// register puts pc's descriptor in a poller's epoll set (pc.mu held).
func register(pc *parkConn, out bool) error {
	pollers.once.Do(startPollers)
	if len(pollers.ps) == 0 {
		return pollers.err
	}
	i := pollers.next.Add(1) % uint32(len(pollers.ps))
	p := pollers.ps[i]
	p.mu.Lock()
	var slot int32
	if n := len(p.free); n > 0 {
		slot = p.free[n-1]
		p.free = p.free[:n-1]
		p.conns[slot] = pc
	} else {
		slot = int32(len(p.conns))
		p.conns = append(p.conns, pc)
	}
	p.mu.Unlock()
	pc.pi, pc.slot = uint16(i+1), slot
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: slot}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(pc.fd), &ev); err != nil {
		p.unregister(pc)
		pc.pi = 0
		return err
	}
	pc.pollOut = out
	return nil
}

// poller returns the poller pc is registered with (pc.pi is not 0).
func (pc *parkConn) poller() *poller { return pollers.ps[pc.pi-1] }

// unregister frees pc's slot. An event of its descriptor still on its way may reach
// the slot's next connection: a spurious wake-up, which finds nothing to read.
func (p *poller) unregister(pc *parkConn) {
	p.mu.Lock()
	p.conns[pc.slot] = nil
	p.free = append(p.free, pc.slot)
	p.mu.Unlock()
}

// run waits for readiness, sweeps expired connections every parkSweep and, while
// connections wait for a worker, checks every workerStall that the queue moves.
func (p *poller) run() {
	for {
		err := p.rc.Read(p.step)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// Cannot happen while the set is open; do not spin if it does.
			time.Sleep(parkSweep)
		}
		now := time.Now()
		p.checkStall(now)
		if now.Sub(p.swept) >= parkSweep {
			p.swept = now
			p.sweep()
		}
		wait := parkSweep - now.Sub(p.swept)
		if p.pool.queued() > 0 {
			wait = workerStall
		}
		p.f.SetReadDeadline(now.Add(wait))
	}
}

// checkStall adds a worker when connections have waited in the queue for
// workerStall while no worker finished one (every worker is held up).
func (p *poller) checkStall(now time.Time) {
	if p.pool.queued() == 0 {
		p.servedAt = now
		return
	}
	if s := p.pool.served.Load(); s != p.served {
		p.served, p.servedAt = s, now
		return
	}
	if now.Sub(p.servedAt) >= workerStall {
		p.servedAt = now
		p.pool.unstall()
	}
}

// step drains the epoll set and wakes the connections it reports; it always returns
// false, to wait for the set to become readable again (an edge-triggered wait: events
// after the last epoll_wait wake it).
func (p *poller) step(uintptr) bool {
	for {
		n, err := epollWait0(p.epfd, p.events[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			return false
		}
		p.mu.Lock()
		for i := range n {
			if s := int(p.events[i].Fd); s < len(p.conns) {
				p.batch[i], p.bits[i] = p.conns[s], p.events[i].Events
			}
		}
		p.mu.Unlock()
		for i := range n {
			if pc := p.batch[i]; pc != nil {
				p.batch[i] = nil
				ev := p.bits[i]
				pc.wake(p.pool, ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0,
					ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0)
			}
		}
		if n < len(p.events) {
			if p.pool.queued() > 0 {
				// Leave the wait to run's stall check.
				p.f.SetReadDeadline(time.Now().Add(workerStall))
			}
			return false
		}
	}
}

// sweep closes the parked connections whose idle timeout has passed.
func (p *poller) sweep() {
	now := time.Now().UnixNano()
	p.mu.Lock()
	for _, pc := range p.conns {
		if pc != nil && pc.expire(now) {
			p.expired = append(p.expired, pc)
		}
	}
	p.mu.Unlock()
	for i, pc := range p.expired {
		p.expired[i] = nil
		pc.finish()
	}
	p.expired = p.expired[:0]
}

// detachFD takes c's socket out of Go's poller: it returns a duplicate of its
// descriptor (close-on-exec, non-blocking as Go's is: the flag is the socket's) for
// the caller to own once c is closed, or -1.
func detachFD(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(s uintptr) {
		if d, err := unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			fd = d
		}
	}) != nil && fd >= 0 {
		unix.Close(fd)
		fd = -1
	}
	return fd
}

// epollWait0 is epoll_wait that does not wait (timeout 0), made raw as sysRead is
// (sysio_linux.go): the pollers' look at their epoll set once Go's poller reported it
// readable.
func epollWait0(epfd int, evs []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
