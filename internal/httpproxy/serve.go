package httpproxy

// Hot path: this file is the per-connection keep-alive loop and the per-request
// exchange with a backend. In steady state (keep-alive client, pooled backend
// connection, bodies that fit the buffers) a request allocates nothing: heads are parsed
// in place, the backend head and a small body go out in one write, and the response
// head and a small body come back in one write.

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server proxies HTTP/1.x client connections of one listener to backends. It holds no
// connection state of its own: the data plane accepts connections and hands each to
// ServeConn on its own goroutine.
type Server struct {
	cfg    atomic.Pointer[Config]
	logger *slog.Logger

	h2once sync.Once
	h2     *httputil.ReverseProxy // the HTTP/2 path, built on first use
}

// NewServer returns a Server using cfg (see SetConfig). logger (slog.Default() if nil)
// receives only rare events: a recovered panic, and at debug level the HTTP/2 path's
// internal errors. Nothing is logged per request.
func NewServer(cfg *Config, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{logger: logger}
	s.SetConfig(cfg)
	return s
}

// SetConfig installs a new configuration for requests that start from now on; requests
// in flight finish with the one they started with. cfg is copied (with defaults filled
// in), so the caller may not change it afterwards to any effect. A nil cfg answers 503.
func (s *Server) SetConfig(cfg *Config) {
	if cfg == nil {
		cfg = &Config{}
	}
	s.cfg.Store(cfg.normalized())
}

// Config returns the configuration in force, with defaults filled in.
func (s *Server) Config() *Config { return s.cfg.Load() }

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
	rawCfg    *Config            // of the request being read
	rawRead   bool               // read before waiting: the socket may hold more
	rawIdle   bool               // waiting for the next request, marked idle
	rawDone   bool               // the connection is to be closed
	rawServe  bool               // a parsed request needs the blocking path
	rawEOF    bool               // the client closed (or reset) its side
	box       *idleBuffers       // carries the buffers when they are shed
	inRequest bool               // bytes of the next request have arrived
	scanned   int                // bytes of the partial head searched so far
	headerDL  bool               // the header timeout is set for this request

	// Per request.
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
	cc, _ := clientConnPool.Get().(*clientConn)
	if cc == nil {
		cc = &clientConn{bodyDone: make(chan error, 1)}
	}
	switch {
	case cc.r.buf == nil:
		cc.takeBuffers(bufSize)
	case len(cc.r.buf) != bufSize:
		cc.r.buf = make([]byte, bufSize)
	}
	cc.s, cc.c, cc.local = s, c, local
	cc.r.conn, cc.r.r, cc.r.w, cc.r.dl = c, 0, 0, deadline{}
	cc.wdl = deadline{}
	cc.remote = addrPortOf(c.RemoteAddr())
	cc.client = cc.remote.Addr().Unmap()
	cc.idle, cc.tunnel = false, nil
	cc.rc, cc.inRequest, cc.scanned, cc.headerDL = nil, false, 0, false
	if tc, ok := c.(*net.TCPConn); ok {
		cc.rc, _ = tc.SyscallConn()
		if cc.rawFn == nil {
			cc.rawFn = cc.rawStep
		}
	}
	cc.stopping.Store(false)
	return cc
}

func (cc *clientConn) release() {
	cc.s, cc.c, cc.r.conn, cc.tunnel, cc.backend, cc.rc, cc.rawCfg = nil, nil, nil, nil, nil, nil, nil
	// Drop references into the old buffer contents.
	clear(cc.req.headers[:cap(cc.req.headers)])
	clear(cc.resp.headers[:cap(cc.resp.headers)])
	cc.req.method, cc.req.target, cc.req.cookie, cc.resp.reason = nil, nil, nil, nil
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

// ServeConn serves HTTP/1.x requests on c until the client closes it, an error ends it,
// or ctx is cancelled, and closes c. Cancelling ctx is a graceful stop: an idle
// keep-alive connection closes at once, a request in flight finishes and its response
// says "Connection: close", an upgraded (WebSocket) tunnel is closed. local is the
// listener address the client connected to (for the access log).
func (s *Server) ServeConn(ctx context.Context, c net.Conn, local netip.AddrPort) {
	cc := newClientConn(s, c, local, s.cfg.Load().MaxHeaderBytes)
	recycle := true
	defer c.Close()
	defer func() {
		if p := recover(); p != nil {
			// A bug must cost one connection, not the process. The connection state may
			// be inconsistent, so it is not recycled.
			s.logger.Error("httpproxy: internal error serving connection", "panic", p, "client", cc.remote.String())
			return
		}
		if recycle {
			cc.release()
		}
	}()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, cc.stop)
		defer func() {
			// When the stop callback has started it may still be running: leave cc to
			// the garbage collector rather than recycle it under its feet.
			recycle = stop()
		}()
	}
	if cc.rc != nil {
		cc.serveRaw()
		return
	}
	for {
		cfg := s.cfg.Load()
		if !cc.readRequest(cfg) {
			return
		}
		if !cc.serveRequest(cfg) {
			return
		}
	}
}

// serveRaw is ServeConn's loop on a plain TCP connection. Requests are read and served
// inside the callback of one poller registration (syscall.RawConn.Read) for as long
// as possible. Through net.Conn, each wait for the next request starts with a read that
// finds nothing (EAGAIN): a wasted system call per request. Here, after a read that
// left the socket empty (it returned less than the room it had), the callback waits
// at once; whatever arrives after the registration wakes it, so nothing is missed.
// Requests whose body is not all buffered, and upgrades, need blocking reads of the
// client connection, which cannot happen inside the callback: for them the callback
// returns and the request is served the ordinary way.
func (cc *clientConn) serveRaw() {
	for {
		cc.rawIdle, cc.rawDone, cc.rawServe, cc.rawEOF = false, false, false, false
		err := cc.rc.Read(cc.rawFn)
		switch {
		case cc.rawDone:
			return
		case err != nil:
			// Idle timeout, stop, or header timeout.
			if cc.rawIdle {
				return
			}
			if cc.inRequest && cc.r.n() > 0 && isTimeout(err) && !cc.stopping.Load() {
				cc.fail(cc.rawCfg, 408, false)
			}
			return
		case cc.rawServe:
			cc.inRequest = false
			if !cc.serveRequest(cc.rawCfg) {
				return
			}
		default:
			return
		}
	}
}

// rawStep is serveRaw's callback: it reads, parses and serves requests, and returns
// false to wait until the connection is readable again, true to leave.
func (cc *clientConn) rawStep(fd uintptr) bool {
	// Called first after the registration, then after each wait: either way the
	// socket may hold bytes.
	cc.rawRead = true
	if cc.rawIdle {
		cc.rawIdle = false
		if !cc.setIdle(false) {
			cc.r.dl.forget()
		}
	}
	if cc.r.buf == nil {
		cc.takeBuffers(cc.s.cfg.Load().MaxHeaderBytes)
	}
	for {
		if cc.rawRead {
			room := cc.r.room()
			n, err := cc.r.rawFill(int(fd))
			switch {
			case err == syscall.EAGAIN, err == errBufferFull:
				// Nothing more now, or a head filling the buffer (the parser answers
				// that): what is buffered comes first.
				cc.rawRead = false
			case n == 0:
				// Closed or reset: requests already buffered are still served.
				cc.rawRead, cc.rawEOF = false, true
			default:
				cc.rawRead = n == room
			}
		}
		if cc.r.n() == 0 {
			if cc.rawRead {
				continue
			}
			return cc.rawWait()
		}
		if !cc.inRequest {
			cc.rawCfg = cc.s.cfg.Load()
			cc.beginRequest(cc.rawCfg)
		}
		switch cc.nextHead(cc.rawCfg) {
		case headFailed:
			cc.rawDone = true
			return true
		case headNeedMore:
			if cc.rawRead {
				continue
			}
			return cc.rawWait()
		}
		req := &cc.req
		if req.chunked || req.contentLength > int64(cc.r.n()) || req.connUpgrade {
			cc.rawServe = true
			return true
		}
		cc.inRequest = false
		if !cc.serveRequest(cc.rawCfg) {
			cc.rawDone = true
			return true
		}
	}
}

// rawWait prepares rawStep's wait: for the next request (idle timeout, marked idle for
// a graceful stop) or for the rest of a head (header timeout).
func (cc *clientConn) rawWait() bool {
	if cc.rawEOF {
		cc.rawDone = true
		return true
	}
	if cc.inRequest {
		if !cc.headerDL {
			cc.headerDL = true
			setReadDeadline(cc.c, &cc.r.dl, cc.start, cc.rawCfg.Timeouts.ClientHeader)
		}
		return false
	}
	cfg := cc.s.cfg.Load()
	now := cc.end // the last response was just written
	if now.IsZero() {
		now = time.Now()
	}
	cc.end = time.Time{}
	setReadDeadline(cc.c, &cc.r.dl, now, cfg.Timeouts.ClientIdle)
	cc.rawIdle = true
	if !cc.setIdle(true) {
		cc.rawDone = true
		return true
	}
	cc.shedBuffers()
	return false
}

// idleBuffers carries a connection's buffers while it waits for its next request, so
// that thousands of idle keep-alive connections hold none (an idle connection then
// costs its goroutine and socket, a few KiB, instead of 8 KiB more of touched buffer).
type idleBuffers struct{ r, out []byte }

var idleBufferPool sync.Pool // of *idleBuffers

// shedBuffers gives the read and output buffers back; nothing may be buffered.
func (cc *clientConn) shedBuffers() {
	box := cc.box
	if box == nil {
		box = new(idleBuffers)
	}
	box.r, box.out = cc.r.buf, cc.out[:0]
	if cap(box.out) > 64<<10 {
		box.out = nil
	}
	cc.r.buf, cc.r.r, cc.r.w, cc.out, cc.box = nil, 0, 0, nil, nil
	idleBufferPool.Put(box)
}

// takeBuffers gives the connection a read buffer of size bytes and an output buffer.
func (cc *clientConn) takeBuffers(size int) {
	box, _ := idleBufferPool.Get().(*idleBuffers)
	if box == nil {
		box = new(idleBuffers)
	}
	if len(box.r) != size {
		box.r = make([]byte, size)
	}
	if box.out == nil {
		box.out = make([]byte, 0, 4096)
	}
	cc.r.buf, cc.out, cc.box = box.r, box.out, box
	box.r, box.out = nil, nil
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
	n, err := cc.c.Write(b)
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
		setReadDeadline(cc.c, &cc.r.dl, time.Now(), cfg.Timeouts.ClientIdle)
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
		n, err := cc.r.fill()
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

// beginRequest starts the next request once its first bytes have arrived.
func (cc *clientConn) beginRequest(cfg *Config) {
	if limit := cfg.MaxHeaderBytes; len(cc.r.buf) < limit {
		nb := make([]byte, limit)
		cc.r.w = copy(nb, cc.r.buffered())
		cc.r.r, cc.r.buf = 0, nb
	}
	cc.inRequest, cc.scanned, cc.headerDL = true, 0, false
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

// bodyMode is how a request or response body is delimited on the wire it is read from.
type bodyMode uint8

const (
	bodyNone bodyMode = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// Errors of the request body streamer, telling whose fault the end was.
var (
	errClientBody  = errors.New("httpproxy: reading request body from client")
	errBackendBody = errors.New("httpproxy: writing request body to backend")
)

// serveRequest proxies the parsed request and reports whether the connection stays
// open for another one.
func (cc *clientConn) serveRequest(cfg *Config) bool {
	if cfg.AccessLog == nil {
		return cc.route(cfg)
	}
	// Copied before the exchange: a streaming body reuses the buffer they point into.
	var method, target string
	if cfg.LogRequestLine {
		method, target = string(cc.req.method), string(cc.req.target)
	}
	keep := cc.route(cfg)
	cc.logRequest(cfg, method, target)
	return keep
}

// sinceStart is how long the request has taken: until the response was written when
// it was (cc.end), else until now.
func (cc *clientConn) sinceStart() time.Duration {
	if cc.end.After(cc.start) {
		return cc.end.Sub(cc.start)
	}
	return time.Since(cc.start)
}

// logRequest calls the AccessLog hook. It is kept out of serveRequest so that the entry
// does not sit in that frame, on the stack of every connection, during the exchange.
//
//go:noinline
func (cc *clientConn) logRequest(cfg *Config, method, target string) {
	cfg.AccessLog(AccessEntry{
		Start:     cc.start,
		Duration:  cc.sinceStart(),
		Client:    cc.remote,
		Local:     cc.local,
		Method:    method,
		Target:    target,
		Status:    cc.status,
		Backend:   cc.backend,
		ReqBytes:  int64(cc.headLen) + cc.bodySent,
		RespBytes: cc.sentResp,
		Failure:   cc.failure,
	})
}

// route builds the backend head, picks a backend (trying others after connect
// failures) and runs the exchange.
func (cc *clientConn) route(cfg *Config) bool {
	req := &cc.req
	cc.bodySent = 0
	clientKeep := !req.connClose && (req.minor == 1 || req.connKeepAlive) && !cc.stopping.Load()
	upgrade := req.minor == 1 && req.connUpgrade && req.hasUpgrade && !req.chunked && req.contentLength <= 0

	var mode bodyMode
	switch {
	case req.chunked:
		mode = bodyChunked
	case req.contentLength > 0:
		mode = bodyLength
	}

	// The head, and as much of the body as is already buffered, go out in one write.
	out := appendRequestHead(cc.out[:0], req, cc.client, cc.local, cfg.Scheme, upgrade)
	inline := 0
	bodyDone := true
	switch mode {
	case bodyLength:
		inline = int(min(req.contentLength, int64(cc.r.n())))
		bodyDone = int64(inline) == req.contentLength
	case bodyChunked:
		cc.reqCS.reset()
		buf := cc.r.buffered()
		for inline < len(buf) && !cc.reqCS.done() {
			n, _, err := cc.reqCS.next(buf[inline:])
			if err != nil {
				cc.out = out
				return cc.fail(cfg, 400, false)
			}
			inline += n
		}
		bodyDone = cc.reqCS.done()
	}
	out = append(out, cc.r.buffered()[:inline]...)
	cc.out = out
	// out holds a copy, which is what a retry resends: the client's bytes can go.
	cc.r.consume(inline)
	cc.bodySent = int64(inline)

	if cfg.Router == nil {
		return cc.fail(cfg, 503, clientKeep && bodyDone)
	}
	var cookie []byte
	if cfg.StickyCookie && req.hasCookie {
		cookie = req.cookie
	}
	var tried *Backend
	for attempt := 0; ; attempt++ {
		b := cfg.Router.Route(cc.client, cookie, tried)
		if b == nil {
			code := 503
			if tried != nil {
				code = 502
			}
			return cc.fail(cfg, code, clientKeep && bodyDone)
		}
		start := cc.start // the request has just been read
		if attempt > 0 {
			start = time.Now()
		}
		cc.end = time.Time{}
		bc, reused, err := b.get(start)
		if err != nil {
			cfg.Router.Done(b, Result{Failure: FailConnect, Duration: time.Since(start)})
			cc.backend, cc.failure = b, FailConnect
			if attempt >= cfg.ConnectRetries {
				return cc.fail(cfg, 502, clientKeep && bodyDone)
			}
			tried = b
			continue
		}
		cc.backend = b
		// Decided now: once a body streams, the buffer the cookie points into is reused.
		setCookie := ""
		if cfg.StickyCookie && b.cookie != "" && (!req.hasCookie || string(req.cookie) != b.cookie) {
			setCookie = b.cookie
		}
		res, keep := cc.exchange(cfg, b, bc, reused, start, mode, inline, bodyDone, upgrade, clientKeep, setCookie)
		if cc.end.IsZero() {
			cc.end = time.Now()
		}
		res.Duration = cc.end.Sub(start)
		cc.failure = res.Failure
		cfg.Router.Done(b, res)
		return keep
	}
}

// exchange sends the request on bc and relays the response. It owns bc: it pools or
// closes it.
func (cc *clientConn) exchange(cfg *Config, b *Backend, bc *backendConn, reused bool, now time.Time,
	mode bodyMode, inline int, bodyDone, upgrade, clientKeep bool, setCookie string) (res Result, keep bool) {
	req := &cc.req
	t := &cfg.Timeouts
	retried := false

send:
	// firstErr is a failed first read of the response by rawSend, handled below like
	// any failed read of the head.
	var firstErr error
	var werr error
	if bodyDone && bc.send.rc != nil && bc.r.n() == 0 && (!reused || now.Sub(bc.idleSince) < rawSendMaxIdle) {
		setReadDeadline(bc.c, &bc.r.dl, now, t.BackendResponseHeader)
		rerr := bc.send.exchange(cc.out)
		werr = bc.send.werr
		if werr == nil && bc.send.written < len(cc.out) {
			setWriteDeadline(bc.c, &bc.wdl, now, t.Backend)
			_, werr = bc.c.Write(cc.out[bc.send.written:])
		}
		if werr == nil {
			firstErr = cmp.Or(rerr, bc.send.rerr)
		}
	} else {
		setWriteDeadline(bc.c, &bc.wdl, now, t.Backend)
		_, werr = bc.c.Write(cc.out)
	}
	if werr != nil {
		bc.close()
		if reused && !retried {
			// A pooled connection the backend had closed: once more on a new one.
			retried, reused = true, false
			var err error
			if bc, err = b.dial(); err == nil {
				goto send
			}
			res.Failure = FailConnect
			return res, cc.fail(cfg, 502, clientKeep && bodyDone)
		}
		res.Failure = FailProtocol
		return res, cc.fail(cfg, 502, clientKeep && bodyDone)
	}
	res.ReqBytes = int64(len(cc.out))
	streaming := !bodyDone
	if streaming {
		remaining := int64(0)
		if mode == bodyLength {
			remaining = req.contentLength - int64(inline)
		}
		cc.bodyFail.Store(0)
		go cc.streamRequestBody(cfg, bc, mode, remaining)
	}

	// Read the response head, relaying interim (1xx) responses.
	setReadDeadline(bc.c, &bc.r.dl, now, t.BackendResponseHeader)
	sawInterim := false
	var end int
	for {
		var err error
		if firstErr != nil {
			err, firstErr = firstErr, nil
		} else {
			end, err = readHead(&bc.r, len(bc.r.buf))
		}
		if err == nil {
			err = parseResponse(bc.r.buffered()[:end], &cc.resp)
			res.RespBytes += int64(end)
			if err != nil {
				err = errMalformedResponse
			}
		}
		if err != nil {
			bodyErr := error(nil)
			if streaming {
				bodyErr = cc.stopRequestBody(bc)
			}
			bc.close()
			switch {
			case bodyErr == errBadChunk:
				res.Failure = FailClientAbort
				return res, cc.fail(cfg, 400, false)
			case bodyErr == errClientBody:
				res.Failure = FailClientAbort
				return res, cc.fail(cfg, 408, false)
			case isTimeout(err):
				res.Failure = FailTimeout
				return res, cc.fail(cfg, 504, false)
			case reused && !retried && !streaming && !sawInterim && res.RespBytes == 0 && isClosedByPeer(err):
				// The backend closed the pooled connection as the request arrived, before
				// answering anything: nothing was processed, so send it once more.
				retried, reused = true, false
				if bc, err = b.dial(); err == nil {
					goto send
				}
				res.Failure = FailConnect
				return res, cc.fail(cfg, 502, clientKeep)
			}
			res.Failure = FailProtocol
			return res, cc.fail(cfg, 502, clientKeep && !streaming)
		}
		if cc.resp.status >= 200 {
			break
		}
		if cc.resp.status == 101 {
			if !upgrade || streaming {
				res, _ = cc.finish(bc, streaming, res, FailProtocol)
				return res, cc.fail(cfg, 502, false)
			}
			return cc.tunnelUpgrade(cfg, bc, end, res)
		}
		sawInterim = true
		if req.minor == 1 {
			cc.out = appendResponseHead(cc.out[:0], &cc.resp, req, frameNone, true, "", false)
			if err := cc.write(cfg, cc.out); err != nil {
				return cc.finish(bc, streaming, res, FailClientAbort)
			}
		}
		bc.r.consume(end)
	}
	resp := &cc.resp
	res.Status, cc.status = resp.status, resp.status

	// How the body is delimited, from the backend and to the client.
	inMode, framing := bodyNone, frameNone
	backendKeep := !resp.connClose && (resp.minor == 1 || resp.connKeepAlive)
	if !(req.isHead || resp.status == 204 || resp.status == 304) {
		switch {
		case resp.chunked:
			inMode, framing = bodyChunked, frameChunked
			if req.minor == 0 {
				framing, clientKeep = frameDechunk, false
			}
		case resp.contentLength >= 0:
			inMode, framing = bodyLength, frameLength
		default:
			inMode, framing, clientKeep, backendKeep = bodyUntilClose, frameClose, false, false
		}
	}
	if streaming && clientKeep && !cc.waitRequestBody() {
		// The backend answered before the upload ended; the connection cannot be
		// reused since the rest of the upload will not be read.
		clientKeep = false
	}
	if cc.stopping.Load() {
		clientKeep = false
	}
	out := appendResponseHead(cc.out[:0], resp, req, framing, clientKeep, setCookie, cfg.Scheme == "https")
	bc.r.consume(end)
	// Whatever body is already buffered goes out with the head.
	remaining := resp.contentLength
	complete := inMode == bodyNone
	switch inMode {
	case bodyLength:
		k := int(min(remaining, int64(bc.r.n())))
		out = append(out, bc.r.buffered()[:k]...)
		bc.r.consume(k)
		res.RespBytes += int64(k)
		remaining -= int64(k)
		complete = remaining == 0
	case bodyChunked:
		cc.respCS.reset()
		if framing == frameChunked {
			buf := bc.r.buffered()
			k := 0
			for k < len(buf) && !cc.respCS.done() {
				m, _, err := cc.respCS.next(buf[k:])
				if err != nil {
					// Send nothing of a malformed body: the client sees a 502.
					cc.out = out
					res, _ = cc.finish(bc, streaming, res, FailProtocol)
					return res, cc.fail(cfg, 502, false)
				}
				k += m
			}
			out = append(out, buf[:k]...)
			bc.r.consume(k)
			res.RespBytes += int64(k)
			complete = cc.respCS.done()
		}
	case bodyUntilClose:
		out = append(out, bc.r.buffered()...)
		res.RespBytes += int64(bc.r.n())
		bc.r.consume(bc.r.n())
	}
	cc.out = out
	// One clock read serves the write deadline, the pool, the durations and the next
	// idle deadline.
	cc.end = time.Now()
	if complete && !streaming && backendKeep && inMode != bodyUntilClose {
		// The whole response is in out: the backend connection can serve others
		// before the client has it.
		b.put(bc, cc.end)
		bc = nil
	}
	if err := cc.writeAt(cfg, out, cc.end); err != nil {
		if bc == nil {
			res.Failure = FailClientAbort
			return res, false
		}
		return cc.finish(bc, streaming, res, FailClientAbort)
	}
	if bc == nil {
		return res, clientKeep
	}
	if !complete {
		n, srcErr, dstErr := copyBody(&bc.r, t.Backend, cc.c, &cc.wdl, t.Client, inMode, remaining,
			&cc.respCS, framing == frameDechunk, nil, 0)
		res.RespBytes += n
		cc.sentResp += n
		switch {
		case dstErr != nil:
			return cc.finish(bc, streaming, res, FailClientAbort)
		case srcErr != nil && inMode == bodyUntilClose && errors.Is(srcErr, io.EOF):
			// The normal end of a close-delimited body.
		case srcErr != nil:
			f := FailProtocol
			switch {
			case streaming && (cc.bodyFail.Load() == bodyFailClient || cc.bodyFail.Load() == bodyFailBadChunk):
				f = FailClientAbort // the failing upload cut the backend short
			case isTimeout(srcErr):
				f = FailTimeout
			}
			return cc.finish(bc, streaming, res, f)
		}
	}
	if streaming {
		if err := cc.stopRequestBody(bc); err != nil {
			backendKeep, clientKeep = false, false
		}
		res.ReqBytes += cc.bodySent - int64(inline)
	}
	cc.end = time.Now() // the body streamed: the head's time is out of date
	if backendKeep && inMode != bodyUntilClose {
		b.put(bc, cc.end)
	} else {
		bc.close()
	}
	return res, clientKeep
}

// rawSendMaxIdle is how long a pooled backend connection may have been idle for the
// request to be sent with rawSend. Longer idle connections are read before waiting, as
// the backend may have closed them (its keep-alive timeout) and said so already.
const rawSendMaxIdle = time.Second

// errMalformedResponse is a backend response that cannot be parsed.
var errMalformedResponse = errors.New("httpproxy: malformed response from backend")

// finish ends an exchange that broke after the response head was sent: the client gets
// a truncated response, so both connections close.
func (cc *clientConn) finish(bc *backendConn, streaming bool, res Result, f Failure) (Result, bool) {
	cc.end = time.Time{}
	if streaming {
		cc.stopRequestBody(bc)
	}
	bc.close()
	res.Failure = f
	return res, false
}

// readHead reads from r until the buffered bytes start with a whole head and returns
// its length.
func readHead(r *connReader, limit int) (int, error) {
	scanned := 0
	for {
		buf := r.buffered()
		if len(buf) > 0 {
			from := max(scanned-3, 0)
			end, err := findHeadEnd(buf[from:min(len(buf), limit)])
			if err != nil {
				return 0, err
			}
			if end > 0 {
				return from + end, nil
			}
			if len(buf) >= limit {
				return 0, errHeadTooLarge
			}
			scanned = len(buf)
		}
		n, err := r.fill()
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return 0, err
		}
	}
}

// isClosedByPeer reports an error that means the backend closed the connection.
func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Codes of cc.bodyFail: why the request body streamer stopped early.
const (
	bodyFailClient   = 1 + iota // reading from the client failed or timed out
	bodyFailBadChunk            // the client's chunked framing is malformed
	bodyFailBackend             // writing to the backend failed
)

// errBodyAborted is the body streamer's result when the exchange stopped it.
var errBodyAborted = errors.New("httpproxy: request body aborted")

// streamRequestBody copies the rest of the request body from the client to bc. It runs
// on its own goroutine while the exchange reads the response, so that an early response
// or "Expect: 100-continue" cannot deadlock; it reports its end on cc.bodyDone.
func (cc *clientConn) streamRequestBody(cfg *Config, bc *backendConn, mode bodyMode, remaining int64) {
	var result error
	defer func() {
		if p := recover(); p != nil {
			cc.s.logger.Error("httpproxy: internal error streaming request body", "panic", p)
			result = errClientBody
		}
		cc.bodyDone <- result
	}()
	t := &cfg.Timeouts
	n, srcErr, dstErr := copyBody(&cc.r, t.Client, bc.c, &bc.wdl, t.Backend, mode, remaining,
		&cc.reqCS, false, bc.c, t.BackendResponseHeader)
	cc.bodySent += n
	switch {
	case srcErr != nil && isChunkError(srcErr):
		result = errBadChunk
		cc.bodyFail.Store(bodyFailBadChunk)
	case srcErr != nil:
		result = errClientBody
		cc.bodyFail.Store(bodyFailClient)
	case dstErr != nil:
		// The backend closed or reset: the exchange's read sees that by itself, and may
		// still have a response (an early 413, say) to relay.
		result = errBackendBody
		cc.bodyFail.Store(bodyFailBackend)
		return
	default:
		return
	}
	// Wake the exchange, which may be waiting for a response that cannot come. bc is
	// still ours: the exchange does not release it before receiving on bodyDone.
	bc.c.SetReadDeadline(aLongTimeAgo)
}

func isChunkError(err error) bool {
	return err == errBadChunk || err == errChunkTooLarge || err == errChunkLineTooLong
}

// waitRequestBody waits briefly for the request body streamer to end and reports
// whether the body was sent whole. The brief wait covers a backend that answers as soon
// as the last byte arrives, before the streamer has noticed it is done.
func (cc *clientConn) waitRequestBody() bool {
	select {
	case err := <-cc.bodyDone:
		cc.bodyDone <- err // stopRequestBody collects it
		return err == nil
	default:
	}
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case err := <-cc.bodyDone:
		cc.bodyDone <- err
		return err == nil
	case <-t.C:
		return false
	}
}

// stopRequestBody ends the request body streamer and returns its result: nil when the
// body was sent whole, its own error when it failed, errBodyAborted when it was still
// running and had to be stopped.
func (cc *clientConn) stopRequestBody(bc *backendConn) error {
	var err error
	select {
	case err = <-cc.bodyDone:
	default:
		if cc.bodyFail.Load() != 0 {
			err = <-cc.bodyDone // failing on its own; about to report
			break
		}
		cc.c.SetReadDeadline(aLongTimeAgo)
		bc.c.SetWriteDeadline(aLongTimeAgo)
		if err = <-cc.bodyDone; err != nil {
			err = errBodyAborted
		}
	}
	cc.r.dl.forget()
	bc.wdl.forget()
	bc.r.dl.forget()
	return err
}

// copyBody streams a body from src to dst: exactly n bytes (bodyLength), a chunked body
// (validated; decoded when decode is set), or everything until src closes. When touch is
// set, each write also pushes touch's read deadline touchTO ahead, so that a long upload
// does not count against the backend's response-header timeout.
func copyBody(src *connReader, srcTO time.Duration, dst net.Conn, dstDL *deadline, dstTO time.Duration,
	mode bodyMode, n int64, cs *chunkScanner, decode bool, touch net.Conn, touchTO time.Duration) (written int64, srcErr, dstErr error) {
	for {
		if mode == bodyLength && n == 0 || mode == bodyChunked && cs.done() {
			return written, nil, nil
		}
		if src.n() == 0 {
			setReadDeadline(src.conn, &src.dl, time.Now(), srcTO)
			k, err := src.fill()
			if k == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return written, err, nil
			}
		}
		buf := src.buffered()
		var chunk []byte
		switch mode {
		case bodyLength:
			if int64(len(buf)) > n {
				buf = buf[:n]
			}
			chunk = buf
			n -= int64(len(buf))
		case bodyUntilClose:
			chunk = buf
		case bodyChunked:
			k := 0
			for k < len(buf) && !cs.done() {
				m, data, err := cs.next(buf[k:])
				if err != nil {
					return written, err, nil
				}
				if decode && data {
					// Decoding: only data segments go out; framing is dropped.
					if err := writeDL(dst, dstDL, dstTO, buf[k:k+m]); err != nil {
						return written, nil, err
					}
					written += int64(m)
				}
				k += m
			}
			if decode {
				src.consume(k)
				continue
			}
			chunk = buf[:k]
		}
		if err := writeDL(dst, dstDL, dstTO, chunk); err != nil {
			return written, nil, err
		}
		written += int64(len(chunk))
		src.consume(len(chunk))
		if touch != nil && touchTO > 0 {
			touch.SetReadDeadline(time.Now().Add(touchTO))
		}
	}
}

func writeDL(c net.Conn, dl *deadline, d time.Duration, b []byte) error {
	setWriteDeadline(c, dl, time.Now(), d)
	_, err := c.Write(b)
	return err
}
