package udpproxy

// This file is the per-datagram hot path from nodes back to clients. It runs
// on the node loop only; it takes no lock per datagram and allocates nothing.

import (
	"encoding/binary"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nodeLoop waits on every session's node socket and relays replies.
type nodeLoop struct {
	p       *Proxy
	epfd    int
	ep      *os.File
	eprc    syscall.RawConn
	evfd    int
	frontRC syscall.RawConn

	events [64]unix.EpollEvent
	nev    int
	waitFn func(uintptr) bool

	b      *batchBufs
	k      int    // filled reply slots
	sent   int    // of which sent
	out    uint64 // reply bytes in the batch
	sendFn func(uintptr) bool
	spare  []*session

	frontDone atomic.Bool
}

func (l *nodeLoop) init(p *Proxy, frontRC syscall.RawConn) error {
	l.p, l.frontRC = p, frontRC
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1} // wakeToken
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return err
	}
	// Non-blocking, the epoll descriptor joins Go's netpoller: the loop parks
	// like any goroutine waiting on a socket instead of holding a thread.
	unix.SetNonblock(epfd, true)
	l.epfd, l.evfd = epfd, evfd
	l.ep = os.NewFile(uintptr(epfd), "udpproxy-epoll")
	if l.eprc, err = l.ep.SyscallConn(); err != nil {
		l.ep.Close()
		unix.Close(evfd)
		return err
	}
	l.b = newBatchBufs(false)
	l.waitFn = l.wait
	l.sendFn = l.send
	return nil
}

// wake makes the loop look at its queue of ended sessions.
func (l *nodeLoop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(l.evfd, one[:])
}

// wait is the callback of the epoll descriptor's RawConn.Read.
func (l *nodeLoop) wait(uintptr) bool {
	n, err := unix.EpollWait(l.epfd, l.events[:], 0)
	if err != nil || n == 0 {
		return false
	}
	l.nev = n
	return true
}

func (l *nodeLoop) run() {
	p := l.p
	defer p.wg.Done()
	for {
		if err := l.eprc.Read(l.waitFn); err != nil {
			break
		}
		now := p.opts.Now()
		for i := range l.nev {
			tok := uint32(l.events[i].Fd)
			if tok == wakeToken {
				var b [8]byte
				unix.Read(l.evfd, b[:])
				continue
			}
			if s := p.slots.get(tok); s != nil {
				l.drain(s, now)
			}
		}
		l.flush()
		l.reap()
		if l.frontDone.Load() {
			break
		}
	}
	l.reap()
	l.ep.Close()
	unix.Close(l.evfd)
}

// drain reads what s's node sent into the reply batch, flushing when full.
func (l *nodeLoop) drain(s *session, now int64) {
	for errs := 0; ; {
		if l.k == batch {
			l.flush()
		}
		n, e := recvmmsg(uintptr(s.fd), l.b.hs[l.k:])
		if e != 0 {
			if e == unix.EAGAIN || e == unix.EINTR {
				return
			}
			// ECONNREFUSED (ICMP port unreachable) and the like: the error
			// is consumed by reading it; tell passive checks, let the front
			// loop move the session, and read on (a few times at most, in case
			// an error stays).
			s.backend.PassiveFailure()
			s.failed.Store(true)
			if errs++; errs == 4 {
				return
			}
			continue
		}
		if n <= 0 {
			return
		}
		var sum uint64
		for j := l.k; j < l.k+n; j++ {
			h := &l.b.hs[j]
			size := h.n
			h.hdr.Name = (*byte)(unsafe.Pointer(&s.client.sa))
			h.hdr.Namelen = s.client.salen
			l.b.iov[j].SetLen(int(size))
			sum += uint64(size)
		}
		l.k += n
		l.out += sum
		s.bytesOut += sum
		s.dOut += uint64(n)
		s.ctr.BytesOut.Add(sum)
		s.lastOut.Store(now)
		s.backend.PassiveSuccess()
		if l.k < batch {
			return // fewer than asked for: the socket is empty
		}
	}
}

// flush sends the reply batch from the frontend socket and resets it.
func (l *nodeLoop) flush() {
	if l.k == 0 {
		return
	}
	l.sent = 0
	l.frontRC.Write(l.sendFn) // an error means the proxy is closing: drop
	for j := range l.k {
		h := &l.b.hs[j]
		h.hdr.Name, h.hdr.Namelen = nil, 0
		l.b.iov[j].SetLen(maxDatagram)
	}
	l.k = 0
	if snap := l.p.snap.Load(); snap != nil && l.out > 0 {
		snap.NB.BytesOut.Add(l.out)
		snap.Config.BytesOut.Add(l.out)
	}
	l.out = 0
}

// send is the callback of the frontend socket's RawConn.Write.
func (l *nodeLoop) send(fd uintptr) bool {
	for l.sent < l.k {
		n, e := sendmmsg(fd, l.b.hs[l.sent:l.k])
		switch {
		case e == unix.EAGAIN:
			return false
		case e == unix.EINTR:
		case e != 0:
			l.sent++ // this one cannot be sent (e.g. EPERM from a firewall): drop it
		default:
			l.sent += n
		}
	}
	return true
}

// reap closes the sessions the front loop ended.
func (l *nodeLoop) reap() {
	p := l.p
	p.closeMu.Lock()
	list := p.ended
	p.ended = l.spare[:0]
	p.closeMu.Unlock()
	for i, s := range list {
		unix.Close(s.fd) // also leaves the epoll set
		p.slots.release(s.slot)
		s.node.State.Release()
		s.ctr.Active.Add(-1)
		s.snap.NB.Active.Add(-1)
		s.snap.Config.Active.Add(-1)
		if p.opts.Active != nil {
			p.opts.Active.Add(-1)
		}
		p.count.Add(-1)
		if p.opts.AccessLog != nil {
			p.opts.AccessLog(s.snap.NodeBalancerID, s.snap.ConfigID, Entry{
				Start: s.start, Duration: time.Since(s.start), Client: s.client.ap, Local: p.addr,
				Node: s.node.Addr, NodeID: s.node.ID, BytesIn: int64(s.bytesIn), BytesOut: int64(s.bytesOut),
				DatagramsIn: int64(s.dIn), DatagramsOut: int64(s.dOut), End: s.reason,
			})
		}
		list[i] = nil
	}
	l.spare = list[:0]
}
