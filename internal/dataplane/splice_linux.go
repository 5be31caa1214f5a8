package dataplane

// Hot path of tcp configs: the kernel-side copy of one direction of a session.
//
// io.Copy between two *net.TCPConn also splices, but it takes a pipe (two file
// descriptors and up to 1 MiB of kernel buffer) for the whole life of the copy, idle
// or not, and its pipe pool only gives pipes back at garbage collection. A proxy
// holding thousands of idle sessions then runs out of descriptors (5,000 idle
// sessions need 20,000 of them for pipes alone). spliceCopy borrows a pipe only while
// bytes are in flight: it waits for the source to become readable without one.

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
)

// pipeSize is the kernel buffer of a splice pipe: one splice(2) call moves at most this
// much. 1 MiB (the default pipe-max-size) keeps bulk transfers at few calls per byte.
const pipeSize = 1 << 20

// splicePipe is a pipe used to splice between two sockets; n bytes sit in it.
type splicePipe struct {
	r, w int
	n    int
	fds  *pipeFDs
}

// pipeFDs are a pipe's descriptors as its cleanup sees them.
type pipeFDs struct{ r, w int }

var pipePool = sync.Pool{New: func() any {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil
	}
	// Errors are harmless: a smaller pipe only means more calls.
	fcntl(fds[0], syscall.F_SETPIPE_SZ, pipeSize)
	p := &splicePipe{r: fds[0], w: fds[1], fds: &pipeFDs{fds[0], fds[1]}}
	// The pool drops entries at garbage collection: close their descriptors then.
	runtime.AddCleanup(p, closePipe, p.fds)
	return p
}}

func closePipe(f *pipeFDs) {
	if f.r >= 0 {
		syscall.Close(f.r)
		syscall.Close(f.w)
		f.r, f.w = -1, -1
	}
}

func fcntl(fd, cmd, arg int) {
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
}

// destroy closes a pipe that cannot go back to the pool (it holds bytes that were not
// delivered).
func (p *splicePipe) destroy() { closePipe(p.fds) }

// errNoPipe reports that no pipe could be created (out of descriptors).
var errNoPipe = errors.New("dataplane: no pipe for splice")

// copyBufSize is the buffer small transfers are copied through. A read that fills it
// means a bulk transfer, whose rest is spliced.
const copyBufSize = 16 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// spliceCopy copies src to dst until src reaches EOF (nil error) or either side fails,
// adding the bytes to every counter each time at least chunk bytes have gone through
// and at the end. It returns the bytes copied.
//
// Each time src becomes readable the first read goes through a small buffer, as
// nginx and HAProxy do: for a request or an answer of a few hundred bytes, read and
// write cost less than moving pages through a pipe. When that read fills the buffer,
// the rest is spliced until src has nothing more. Buffer and pipe are borrowed only
// while bytes are in flight.
//
// act, when not nil, is marked each time bytes arrive (the idle watch reads it).
func spliceCopy(dst, src *net.TCPConn, act *activity, counters ...adder) (int64, error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		buf     *[]byte // borrowed while bytes are in it
		bw, bn  int     // buf[bw:bn] is still to be written
		bulk    bool    // this wake-up splices
		p       *splicePipe
		total   int64
		pending int64
		eof     bool
		rerr    error
		werr    error
	)
	flush := func() {
		if pending > 0 {
			for _, c := range counters {
				c.Add(uint64(pending))
			}
			pending = 0
		}
	}
	// Called by the poller with the source descriptor, again each time it became
	// readable, until it returns true.
	fill := func(fd uintptr) bool {
		for {
			var n int
			var err error
			if !bulk {
				if buf == nil {
					buf = copyBufPool.Get().(*[]byte)
				}
				n, err = syscall.Read(int(fd), *buf)
			} else {
				if p == nil {
					p, _ = pipePool.Get().(*splicePipe)
					if p == nil {
						rerr = errNoPipe
						return true
					}
				}
				n, err = splice(int(fd), p.w, pipeSize-p.n)
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				// Wait without holding a buffer or a pipe; start the next wake-up with
				// a read.
				if buf != nil {
					copyBufPool.Put(buf)
					buf = nil
				}
				if p != nil && p.n == 0 {
					pipePool.Put(p)
					p = nil
				}
				bulk = false
				return false
			case err != nil:
				rerr = err
				return true
			case n <= 0:
				eof = true
				return true
			}
			if bulk {
				p.n += n
			} else {
				bw, bn = 0, n
				bulk = n == len(*buf)
			}
			return true
		}
	}
	drain := func(fd uintptr) bool {
		for bw < bn {
			n, err := syscall.Write(int(fd), (*buf)[bw:bn])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false
			case err != nil:
				werr = err
				return true
			}
			bw += n
			total += int64(n)
			pending += int64(n)
		}
		for p != nil && p.n > 0 {
			n, err := splice(p.r, int(fd), p.n)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false
			case err != nil:
				werr = err
				return true
			}
			p.n -= n
			total += int64(n)
			pending += int64(n)
		}
		return true
	}
	defer func() {
		flush()
		if buf != nil {
			copyBufPool.Put(buf)
		}
		if p != nil {
			if p.n == 0 {
				pipePool.Put(p)
			} else {
				p.destroy()
			}
		}
	}()
	for {
		if err := srcRC.Read(fill); err != nil {
			return total, err
		}
		if rerr != nil {
			return total, rerr
		}
		if bw < bn || p != nil && p.n > 0 {
			act.mark()
			if err := dstRC.Write(drain); err != nil {
				return total, err
			}
			if werr != nil {
				return total, werr
			}
			if pending >= chunk {
				flush()
			}
		}
		if eof {
			return total, nil
		}
	}
}

// splice moves up to max bytes from in to out without blocking.
func splice(in, out, max int) (int, error) {
	n, err := syscall.Splice(in, nil, out, nil, max, spliceNonblock|spliceMove)
	if n < 0 {
		n = 0
	}
	return int(n), err
}

// splice(2) flags (golang.org/x/sys/unix has them; syscall does not).
const (
	spliceMove     = 0x1
	spliceNonblock = 0x2
)
