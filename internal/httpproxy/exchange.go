package httpproxy

// Hot path: one request's way through the proxy: routing, the exchange with a backend
// (head out, response head back, interim responses relayed, body framing decided) and
// the access-log hook. In steady state (keep-alive client, pooled backend connection,
// bodies that fit the buffers) a request allocates nothing: the backend head and a
// small body go out in one write, and the response head and a small body come back in
// one write.

import (
	"cmp"
	"errors"
	"io"
	"syscall"
	"time"
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
