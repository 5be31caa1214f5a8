package httpproxy

// Hot path: the keep-alive loop of a plain TCP client connection, run inside one
// poller registration, and the buffers an idle connection gives back.

import (
	"sync"
	"syscall"
	"time"
)

// serveRaw is ServeConn's loop on a plain TCP connection. Requests are read and served
// inside the callback of one poller registration (syscall.RawConn.Read) for as long
// as possible. Through net.Conn, each wait for the next request starts with a read that
// finds nothing (EAGAIN): a wasted system call per request. Here, after a read that
// left the socket empty (it returned less than the room it had), the callback waits
// at once; whatever arrives after the registration wakes it, so nothing is missed.
// Requests whose body is not all buffered, and upgrades, need blocking reads of the
// client connection, which cannot happen inside the callback: for them the callback
// returns and the request is served the ordinary way.
//
// It returns true when the connection is to be parked (only when cc.pc is set): it
// waits for its next request with nothing buffered. Otherwise it is to be closed.
func (cc *clientConn) serveRaw() bool {
	for {
		cc.rawIdle, cc.rawDone, cc.rawServe, cc.rawEOF, cc.rawPark = false, false, false, false, false
		err := cc.rc.Read(cc.rawFn)
		switch {
		case cc.rawPark:
			return true
		case cc.rawDone:
			return false
		case err != nil && cc.graceWait && isTimeout(err) && !cc.stopping.Load():
			// A hot connection idle for hotWithin: it parks, its idle timeout
			// counted from the last response.
			cc.graceWait = false
			cc.pc.parkAt(cc.graceFrom, cc.waitTimeout(cc.s.cfg.Load()))
			return true
		case err != nil:
			// Idle timeout, stop, or header timeout.
			if cc.inRequest && cc.r.n() > 0 && isTimeout(err) && !cc.stopping.Load() {
				cc.fail(cc.rawCfg, 408, false)
			}
			return false
		case cc.rawServe:
			cc.inRequest = false
			if !cc.serveRequest(cc.rawCfg) {
				return false
			}
		default:
			return false
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
	if cc.graceWait {
		// The next request came within the grace: the wait's deadline becomes the
		// idle timeout's, as on a connection that never parks.
		cc.graceWait = false
		setReadDeadline(cc.c, &cc.r.dl, cc.graceFrom, cc.waitTimeout(cc.s.cfg.Load()))
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
		// Nothing of the request has been acted on: a stop ends this wait too.
		cc.rawIdle = true
		if !cc.setIdle(true) {
			cc.rawDone = true
			return true
		}
		return false
	}
	cfg := cc.s.cfg.Load()
	now := cc.end // the last response was just written
	if now.IsZero() {
		now = time.Now()
	}
	cc.end = time.Time{}
	if cc.pc != nil && cc.gof == nil {
		// Between requests (or before the first), nothing buffered: the poller waits
		// for the next one, and a worker serves it.
		if cc.stopping.Load() {
			cc.rawDone = true
			return true
		}
		cc.pc.parkAt(now, cc.waitTimeout(cfg))
		// The poller keeps the idle timeout. A read deadline left on the socket (the
		// first request's, or a head's) would fail the resumed connection's first
		// read once past: clear it (a system call only when one is set).
		setReadDeadline(cc.c, &cc.r.dl, now, 0)
		cc.rawPark = true
		return true
	}
	wait := cc.waitTimeout(cfg)
	if cc.gof != nil {
		// Hot: wait here for up to hotWithin, then park (serveRaw, which sets the
		// park's deadline from graceFrom: only a connection that parks needs one).
		if wait <= 0 || wait > hotWithin {
			cc.graceWait, cc.graceFrom, wait = true, now, hotWithin
		}
	}
	setReadDeadline(cc.c, &cc.r.dl, now, wait)
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

// takeBuffers gives the connection a read buffer that may grow to size bytes (the
// head limit) and an output buffer. A pooled read buffer is taken as it is when it
// fits: one that grew for a long head serves the next connection too.
func (cc *clientConn) takeBuffers(size int) {
	box, _ := idleBufferPool.Get().(*idleBuffers)
	if box == nil {
		box = new(idleBuffers)
	}
	box.r = fitReadBuffer(box.r, size)
	cc.r.max = size
	if box.out == nil {
		box.out = make([]byte, 0, 4096)
	}
	cc.r.buf, cc.out, cc.box = box.r, box.out, box
	box.r, box.out = nil, nil
}
