package httpproxy

// Hot path: the state of one client connection, its graceful stop, and reading request
// heads (the blocking path; serveRaw in rawloop.go is the plain TCP one).

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// clientConn is the state of one client connection. It and its buffers are recycled
// across connections.
type clientConn struct {
	s      *Server
	c      net.Conn
	r      connReader
	wdl    deadline
	out    []byte
	remote netip.AddrPort
	client netip.Addr
	local  netip.AddrPort

	req    request
	resp   response
	reqCS  chunkScanner
	respCS chunkScanner

	// Graceful stop: mu guards idle and tunnel against the context's stop callback.
	mu       sync.Mutex
	idle     bool
	tunnel   net.Conn
	stopping atomic.Bool

	// The request body streamer (at most one per connection at a time).
	bodyDone chan error
	bodyFail atomic.Int32
	bodySent int64

	// The keep-alive loop on a plain TCP connection (serveRaw).
	rc        syscall.RawConn
	rawFn     func(uintptr) bool // rawStep, bound once
	rawW      rawWriter          // writes of a plain TCP connection (rc set)
	rawCfg    *Config            // of the request being read
	rawRead   bool               // read before waiting: the socket may hold more
	rawIdle   bool               // this wait is marked idle (a stop ends it at once)
	rawDone   bool               // the connection is to be closed
	rawServe  bool               // a parsed request needs the blocking path
	rawEOF    bool               // the client closed (or reset) its side
	rawPark   bool               // the connection is idle and is to be parked
	pc        *parkConn          // set when the connection may park (ServeFD)
	fdc       *fdConn            // reads and writes pc's socket; kept across connections
	gof       *os.File           // pc's socket in Go's poller while the connection is hot (hot_linux.go)
	gc        goConn             // the net.Conn of gof
	graceWait bool               // this wait for the next request ends at hotWithin: then park
	graceFrom time.Time          // the last response before that wait
	box       *idleBuffers       // carries the buffers when they are shed
	inRequest bool               // bytes of the next request have arrived
	scanned   int                // bytes of the partial head searched so far
	headerDL  bool               // the header timeout is set for this request
	first     bool               // no request has started on this connection yet

	// Per request.
	plan     exchangePlan
	start    time.Time
	end      time.Time // when the response (or its head) was written; zero before
	headLen  int
	sentResp int64 // bytes written to the client
	status   int   // status sent to the client
	backend  *Backend
	failure  Failure
}

var clientConnPool sync.Pool

func newClientConn(s *Server, c net.Conn, local netip.AddrPort, bufSize int) *clientConn {
	var rc syscall.RawConn
	if tc, ok := c.(*net.TCPConn); ok {
		rc, _ = tc.SyscallConn()
	}
	return newClientConnFor(s, c, local, bufSize, addrPortOf(c.RemoteAddr()), rc)
}

// newClientConnFor is newClientConn with the client's address and, for a plain TCP
// connection, its RawConn already known (a parked connection keeps them).
func newClientConnFor(s *Server, c net.Conn, local netip.AddrPort, bufSize int, remote netip.AddrPort, rc syscall.RawConn) *clientConn {
	cc, _ := clientConnPool.Get().(*clientConn)
	if cc == nil {
		cc = &clientConn{bodyDone: make(chan error, 1)}
	}
	if cc.r.buf == nil {
		cc.takeBuffers(bufSize)
	} else {
		cc.r.buf = fitReadBuffer(cc.r.buf, bufSize)
	}
	cc.r.max = bufSize
	cc.s, cc.c, cc.local = s, c, local
	cc.r.conn, cc.r.r, cc.r.w, cc.r.dl = c, 0, 0, deadline{}
	cc.wdl = deadline{}
	cc.remote = remote
	cc.client = cc.remote.Addr().Unmap()
	cc.idle, cc.tunnel, cc.pc = false, nil, nil
	cc.rc, cc.inRequest, cc.scanned, cc.headerDL, cc.first = rc, false, 0, false, true
	if rc != nil {
		if cc.rawFn == nil {
			cc.rawFn = cc.rawStep
		}
		cc.rawW.init(rc)
	}
	// A pooled clientConn keeps its last connection's times: the first wait must not
	// start from its last response (rawWait reads cc.end).
	cc.start, cc.end = time.Time{}, time.Time{}
	cc.stopping.Store(false)
	return cc
}

func (cc *clientConn) release() {
	cc.s, cc.c, cc.r.conn, cc.tunnel, cc.backend, cc.rc, cc.rawCfg, cc.pc = nil, nil, nil, nil, nil, nil, nil, nil
	cc.rawW.rc = nil
	cc.graceWait = false // gof is cleared by leaveGo
	if cc.fdc != nil {
		cc.fdc.pc, cc.fdc.fd = nil, -1
	}
	// Drop references into the old buffer contents.
	clear(cc.req.headers[:cap(cc.req.headers)])
	clear(cc.resp.headers[:cap(cc.resp.headers)])
	cc.req.method, cc.req.target, cc.req.cookie, cc.resp.reason = nil, nil, nil, nil
	cc.req.authority, cc.req.path = nil, nil
	cc.plan.setCookie = ""
	if cap(cc.out) > 64<<10 {
		cc.out = make([]byte, 0, 4096)
	}
	clientConnPool.Put(cc)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// stop is the graceful-stop callback: it wakes an idle connection and ends a tunnel.
func (cc *clientConn) stop() {
	cc.stopping.Store(true)
	cc.mu.Lock()
	if cc.idle {
		cc.c.SetReadDeadline(aLongTimeAgo)
	}
	if cc.tunnel != nil {
		cc.c.SetDeadline(aLongTimeAgo)
		cc.tunnel.SetDeadline(aLongTimeAgo)
	}
	cc.mu.Unlock()
}

func (cc *clientConn) setIdle(idle bool) bool {
	cc.mu.Lock()
	cc.idle = idle
	cc.mu.Unlock()
	return !cc.stopping.Load()
}

// write sends b to the client under the client write timeout.
func (cc *clientConn) write(cfg *Config, b []byte) error {
	return cc.writeAt(cfg, b, time.Now())
}

// writeAt is write with the current time already read.
func (cc *clientConn) writeAt(cfg *Config, b []byte, now time.Time) error {
	setWriteDeadline(cc.c, &cc.wdl, now, cfg.Timeouts.Client)
	var n int
	var err error
	if cc.rc != nil {
		n, err = cc.rawW.write(b) // raw system calls: see sysRead
	} else {
		n, err = cc.c.Write(b)
	}
	cc.sentResp += int64(n)
	return err
}

// fail answers the request with the proxy's own error response.
func (cc *clientConn) fail(cfg *Config, code int, keep bool) bool {
	cc.status = code
	if cc.write(cfg, errorResponse(code, keep)) != nil {
		return false
	}
	return keep
}

// readRequest reads and parses the next request head. It returns false when the
// connection is to be closed (after answering an error where one is due).
func (cc *clientConn) readRequest(cfg *Config) bool {
	if cc.r.n() == 0 {
		// Waiting for the next request: the deadline is set before marking the
		// connection idle so that a concurrent stop's past deadline wins.
		setReadDeadline(cc.c, &cc.r.dl, time.Now(), cc.waitTimeout(cfg))
		if !cc.setIdle(true) {
			return false
		}
		n, _ := cc.r.fill()
		if !cc.setIdle(false) {
			cc.r.dl.forget()
		}
		if n == 0 {
			return false // closed, idle timeout or stop: nothing to answer
		}
	}
	cc.beginRequest(cfg)
	for {
		switch cc.nextHead(cfg) {
		case headReady:
			cc.inRequest = false
			return true
		case headFailed:
			return false
		}
		if !cc.headerDL {
			cc.headerDL = true
			setReadDeadline(cc.c, &cc.r.dl, cc.start, cfg.Timeouts.ClientHeader)
		}
		// Nothing of the request has been acted on: a stop ends this wait too.
		if !cc.setIdle(true) {
			return false
		}
		n, err := cc.r.fill()
		if !cc.setIdle(false) {
			cc.r.dl.forget()
		}
		if n == 0 {
			switch {
			case errors.Is(err, errBufferFull):
				return cc.fail(cfg, 431, false)
			case isTimeout(err) && !cc.stopping.Load():
				return cc.fail(cfg, 408, false)
			}
			return false
		}
	}
}

// waitTimeout bounds the wait for the next request: the header timeout for a new
// connection's first (a client that connects and says nothing is no better than one
// that sends half a head), the keep-alive idle timeout between requests.
func (cc *clientConn) waitTimeout(cfg *Config) time.Duration {
	if cc.first {
		return cfg.Timeouts.ClientHeader
	}
	return cfg.Timeouts.ClientIdle
}

// beginRequest starts the next request once its first bytes have arrived.
func (cc *clientConn) beginRequest(cfg *Config) {
	// The buffer grows to the limit when a head needs it (connReader.fill).
	cc.r.max = cfg.MaxHeaderBytes
	cc.inRequest, cc.scanned, cc.headerDL, cc.first = true, 0, false, false
	cc.start, cc.end = time.Now(), time.Time{}
	cc.sentResp, cc.status, cc.backend, cc.failure = 0, 0, nil, FailNone
}

// Results of nextHead.
const (
	headNeedMore = iota // no whole head buffered yet
	headReady           // cc.req holds the parsed head
	headFailed          // answered with an error; the connection closes
)

// nextHead parses the request head at the start of the buffered bytes, if it is all
// there.
func (cc *clientConn) nextHead(cfg *Config) int {
	limit := cfg.MaxHeaderBytes
	buf := cc.r.buffered()
	// Empty lines before a request line are to be ignored (RFC 9112 section 2.2).
	for len(buf) >= 2 && buf[0] == '\r' && buf[1] == '\n' && cc.scanned == 0 {
		cc.r.consume(2)
		buf = buf[2:]
	}
	if len(buf) == 0 {
		return headNeedMore
	}
	from := max(cc.scanned-3, 0)
	end, err := findHeadEnd(buf[from:min(len(buf), limit)])
	if err != nil {
		cc.fail(cfg, 400, false)
		return headFailed
	}
	if end > 0 {
		end += from
		if err := parseRequest(buf[:end], &cc.req, cfg.StickyCookie); err != nil {
			var pe *protoError
			code := 400
			if errors.As(err, &pe) {
				code = pe.status
			}
			cc.fail(cfg, code, false)
			return headFailed
		}
		cc.r.consume(end)
		cc.headLen = end
		return headReady
	}
	if len(buf) >= limit {
		cc.fail(cfg, 431, false)
		return headFailed
	}
	cc.scanned = len(buf)
	return headNeedMore
}
