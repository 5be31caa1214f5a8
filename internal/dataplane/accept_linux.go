//go:build linux

package dataplane

// Hot path of plain http configs with parking (the default on Linux): clients accepted
// raw, as the tcp engine does, so that their sockets never enter Go's poller. The
// listening socket is taken over from Go's listener (adoptRaw) into an *os.File;
// accept4 (non-blocking, close-on-exec, the client's address with it) runs inside the
// File's RawConn Read, which waits on Go's poller when no client is queued. Per client that saves Go's netFD, *net.TCPConn, two
// TCPAddrs and the runtime's pollDesc (kept by an idle connection for as long as it
// lives: a third of an idle connection's memory), and three system calls (Go's
// epoll_ctl, getsockname, TCP_NODELAY). httpproxy.Server.ServeFD serves the
// descriptor.

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// adoptRaw takes the listening sockets of a plain http config whose Server parks
// over from Go's listeners, as the tcp engine does (adopt): each is duplicated into an
// *os.File (still waited for by Go's poller, which a File's RawConn can read, unlike a
// TCPListener's) and its Go listener closed. It reports false, changing nothing, when
// a socket cannot be taken over; closeSockets closes the files.
func (l *listener) adoptRaw() bool {
	if l.protocol != model.ProtocolHTTP || l.http == nil || !l.http.Parking() {
		return false
	}
	files := make([]*os.File, 0, len(l.lns))
	fail := func(err error) bool {
		for _, f := range files {
			f.Close()
		}
		l.plane.log.Error("cannot accept http clients raw; accepting them through Go", "config_id", l.configID, "err", err)
		return false
	}
	for _, ln := range l.lns {
		fd, err := dupListener(ln)
		if err != nil {
			return fail(err)
		}
		// Accepted sockets inherit TCP_NODELAY from the listening one (Go sets it on
		// each accepted connection, one system call each; keep-alive is inherited
		// already, see listenConfig): a small answer written while an earlier one is
		// unacknowledged leaves at once, not after the ACK.
		setNoDelay(fd)
		f := os.NewFile(uintptr(fd), "listener") // non-blocking: in Go's poller
		if err := f.SetReadDeadline(time.Time{}); err != nil {
			f.Close()
			return fail(err)
		}
		files = append(files, f)
	}
	for _, ln := range l.lns {
		ln.Close() // Go's poller lets go of it; the file keeps the socket listening
	}
	l.raw = files
	return true
}

// serveRaw runs the accept loop of raw socket i until it is closed.
func (l *listener) serveRaw(i int) {
	defer l.wg.Done()
	f, local := l.raw[i], l.addrs[i]
	rc, err := f.SyscallConn()
	if err != nil {
		return // cannot happen with an open file
	}
	var (
		fd    int
		src   netip.AddrPort
		errno syscall.Errno
	)
	// After waiting for clients the loop yields once before it accepts, so that the
	// goroutines woken by the same poll run first. Go's poller hands back the
	// goroutines of one poll last-ready first, and an accepted client's goroutine runs
	// next, so without the yield a client could be picked before an API request that
	// reached the server ahead of it, a drain say, was read. Clients that queued
	// meanwhile are accepted in one pass.
	waited := false
	accept := func(lfd uintptr) bool {
		if waited {
			waited = false
			runtime.Gosched()
		}
		for {
			fd, src, errno = accept4(int(lfd))
			// A client gone before it was accepted is skipped, as Go's Accept does.
			if errno != syscall.EINTR && errno != syscall.ECONNABORTED {
				waited = errno == syscall.EAGAIN
				return !waited
			}
		}
	}
	var delay time.Duration
	for {
		rerr := rc.Read(accept)
		if rerr != nil && l.rawClosed.Load() {
			return // (a File's RawConn says so with poll's own error, not os.ErrClosed)
		}
		if rerr != nil || errno != 0 {
			// Out of file descriptors and the like: back off instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.plane.log.Warn("accept failed", "config_id", l.configID, "addr", local.String(), "err", cmpErr(rerr, errno), "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s := l.snap.Load()
		if !l.firewallFD(s, fd, src, local) || !l.admitFD(s, fd, src) {
			continue
		}
		l.wg.Add(1)
		go l.handleFD(s, fd, src, local)
	}
}

func cmpErr(err error, errno syscall.Errno) error {
	if err != nil {
		return err
	}
	return errno
}

// firewallFD is firewall for a raw client socket: a dropped client is reset.
func (l *listener) firewallFD(s *snapshot, fd int, src, local netip.AddrPort) bool {
	if s.guard.Armed() == nil {
		return true
	}
	ok, rule := s.guard.Allow(src.Addr(), firewall.TCP, local.Port())
	if ok {
		return true
	}
	closeReset(fd)
	if log := l.plane.opts.DropLog; log != nil {
		log(s.nbID, s.cfg.ID, src, local, rule)
	}
	return false
}

// admitFD is admit for a raw client socket. The refused client over the connection
// cap is answered 503 (answerBusy) through a net.Conn made of the socket: a rare path
// that may cost a few system calls.
func (l *listener) admitFD(s *snapshot, fd int, src netip.AddrPort) bool {
	p := l.plane
	if p.active.Add(1) > int64(p.opts.MaxConns) {
		p.active.Add(-1)
		if c := tcpConnOf(fd); c == nil || !l.answerBusy(s, c) {
			s.stats.Refused.Add(1)
			s.nb.Refused.Add(1)
			if c != nil {
				c.SetLinger(0)
				c.Close()
			}
		}
		return false
	}
	if s.limiter != nil && !s.limiter.Allow(src.Addr(), p.now()) {
		p.active.Add(-1)
		s.stats.Refused.Add(1)
		s.nb.Refused.Add(1)
		closeReset(fd)
		return false
	}
	return true
}

// tcpConnOf makes a *net.TCPConn of the raw socket fd, which it closes (the conn has
// its own descriptor); nil when it cannot, fd then reset and closed.
func tcpConnOf(fd int) *net.TCPConn {
	f := os.NewFile(uintptr(fd), "client")
	c, err := net.FileConn(f)
	tc, ok := c.(*net.TCPConn)
	if err != nil || !ok {
		if c != nil {
			c.Close()
		}
		// Closed through f, which owns fd now (its finalizer would close it again).
		syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1})
		f.Close()
		return nil
	}
	f.Close()
	return tc
}

// handleFD is handle for a raw plain http client socket.
func (l *listener) handleFD(s *snapshot, fd int, src, local netip.AddrPort) {
	s.nb.Connections.Add(1)
	s.stats.Connections.Add(1)
	s.nb.Active.Add(1)
	s.stats.Active.Add(1)
	l.http.ServeFD(l.ctx, fd, src, local, s.ended)
}
