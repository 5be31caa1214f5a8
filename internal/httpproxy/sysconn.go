package httpproxy

import (
	"io"
	"net"
	"os"
	"syscall"
)

// rawWriter writes to a socket through its RawConn: Go's poller waits for room (under
// the write deadline, as net.Conn.Write does) and the writes themselves are sysWrite
// calls. Its callback is bound once, so a write allocates nothing. One write at a
// time.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(uintptr) bool // step, bound once
	b   []byte
	n   int
	err error
}

func (w *rawWriter) init(rc syscall.RawConn) {
	w.rc = rc
	if w.fn == nil {
		w.fn = w.step
	}
}

// write writes all of b, as net.Conn.Write does.
func (w *rawWriter) write(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	err := w.rc.Write(w.fn)
	n := w.n
	w.b = nil
	if err == nil {
		err = w.err
	}
	return n, err
}

func (w *rawWriter) step(fd uintptr) bool {
	for w.n < len(w.b) {
		n, err := sysWrite(int(fd), w.b[w.n:])
		switch {
		case n > 0:
			w.n += n
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return false // wait for room
		case err == nil:
			w.err = io.ErrShortWrite
			return true
		default:
			w.err = os.NewSyscallError("write", err)
			return true
		}
	}
	return true
}

// rawReader reads from a socket through its RawConn, as rawWriter writes.
type rawReader struct {
	rc  syscall.RawConn
	fn  func(uintptr) bool // step, bound once
	b   []byte
	n   int
	err error
}

func (r *rawReader) init(rc syscall.RawConn) {
	r.rc = rc
	if r.fn == nil {
		r.fn = r.step
	}
}

// read reads once into b, waiting for bytes as net.Conn.Read does; io.EOF at the end.
func (r *rawReader) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r.b, r.n, r.err = b, 0, nil
	err := r.rc.Read(r.fn)
	n := r.n
	r.b = nil
	if err == nil {
		err = r.err
	}
	return n, err
}

func (r *rawReader) step(fd uintptr) bool {
	for {
		n, err := sysRead(int(fd), r.b)
		switch {
		case n > 0:
			r.n = n
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false // wait for bytes
		case err == nil:
			r.err = io.EOF
		default:
			r.err = os.NewSyscallError("read", err)
		}
		return true
	}
}

// sysConn is a TCP connection whose Read and Write are rawReader's and rawWriter's;
// everything else is the *net.TCPConn's. Like a *tls.Conn's own use of its connection,
// it allows one Read and one Write at a time (one of each may run concurrently).
type sysConn struct {
	*net.TCPConn
	r rawReader
	w rawWriter
}

// SysConn returns c for a TLS server (or any user that reads and writes it one call
// at a time per direction) to read and write with raw system calls (see sysRead): the
// https keep-alive path's reads and writes then never lose their P to the runtime's
// monitor under CPU contention. It returns c itself when it has no descriptor.
func SysConn(c *net.TCPConn) net.Conn {
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	sc := &sysConn{TCPConn: c}
	sc.r.init(rc)
	sc.w.init(rc)
	return sc
}

func (c *sysConn) Read(b []byte) (int, error)  { return c.r.read(b) }
func (c *sysConn) Write(b []byte) (int, error) { return c.w.write(b) }
