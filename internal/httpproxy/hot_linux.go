//go:build linux

package httpproxy

// Hot connections (see hotWithin): a parked connection's socket moved into Go's poller
// while its client sends requests back to back, and back into the parking epoll set
// when it idles.

import (
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// goConn is the net.Conn of a hot connection: a duplicate of its descriptor as an
// *os.File, which Go's poller waits for (reads, writes and deadlines are the File's).
type goConn struct {
	*os.File
	pc *parkConn
	fd int
}

// CloseWrite shuts down the writing side (the end of a tunnel's one direction).
func (g *goConn) CloseWrite() error { return syscall.Shutdown(g.fd, syscall.SHUT_WR) }

// LocalAddr implements net.Conn (it allocates: not for the per-request path).
func (g *goConn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(*g.pc.local) }

// RemoteAddr implements net.Conn (it allocates: not for the per-request path).
func (g *goConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(g.pc.remote()) }

// enterGo has cc serve pc's socket through Go's poller: a duplicate of the descriptor
// (the same socket, non-blocking) goes into Go's poller as an *os.File, and the
// descriptor leaves the parking epoll set, so that readiness wakes only the
// connection's goroutine. Four system calls, once per busy spell (leaveGo makes
// three).
func (pc *parkConn) enterGo(cc *clientConn) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.fd < 0 {
		return net.ErrClosed
	}
	if pc.pi == 0 {
		return errNotParked
	}
	w := pc.poller().pool
	if !w.takeHot() {
		return errTooManyHot
	}
	d, err := unix.FcntlInt(uintptr(pc.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		w.hot.Add(-1)
		return err
	}
	// d is kept for CloseWrite: the File's Fd method would make the socket blocking,
	// for every descriptor of it.
	f := os.NewFile(uintptr(d), "client") // non-blocking (the socket's flag): in Go's poller
	rc, err := f.SyscallConn()
	if err == nil {
		err = unix.EpollCtl(pc.poller().epfd, unix.EPOLL_CTL_DEL, int(pc.fd), nil)
	}
	if err != nil {
		f.Close()
		w.hot.Add(-1)
		return err
	}
	cc.gof, cc.gc = f, goConn{File: f, pc: pc, fd: d}
	cc.c, cc.r.conn, cc.rc = &cc.gc, &cc.gc, rc
	if cc.rawFn == nil {
		cc.rawFn = cc.rawStep
	}
	cc.rawW.init(rc)
	return nil
}

// takeHot counts one more hot connection, unless half the pool's workers serve
// hot ones already.
func (w *workerPool) takeHot() bool {
	for {
		n := w.hot.Load()
		if n >= w.max.Load()/2 {
			return false
		}
		if w.hot.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

var (
	errNotParked  = errors.New("httpproxy: the connection never parked")
	errTooManyHot = errors.New("httpproxy: half the workers serve hot connections")
)

// leaveGo ends enterGo: the duplicate leaves Go's poller and is closed, and the
// descriptor goes back into its epoll set (with what it had: reading, and writing once
// a write waited), which reports whatever is already readable.
func (pc *parkConn) leaveGo(cc *clientConn) error {
	cc.gof.Close()
	cc.gof, cc.gc = nil, goConn{}
	pc.poller().pool.hot.Add(-1)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.fd < 0 {
		return nil // closed
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: pc.slot}
	if pc.pollOut {
		ev.Events |= unix.EPOLLOUT
	}
	return unix.EpollCtl(pc.poller().epfd, unix.EPOLL_CTL_ADD, int(pc.fd), &ev)
}
