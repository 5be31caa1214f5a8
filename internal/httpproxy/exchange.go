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

// planRequest puts the backend head, and as much of the body as is already buffered, in
// cc.out (they go out in one write) and fills in cc.plan. It returns false when the
// request was refused (a malformed chunked body) and the connection is to close.
func (cc *clientConn) planRequest(cfg *Config) bool {
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
	cc.plan = exchangePlan{mode: mode, inline: inline, bodyDone: bodyDone, upgrade: upgrade, clientKeep: clientKeep}
	return true
}

// route picks a backend (trying others after connect failures) and runs the exchange.
func (cc *clientConn) route(cfg *Config) bool {
	req := &cc.req
	if !cc.planRequest(cfg) {
		return false
	}
	clientKeep, bodyDone := cc.plan.clientKeep, cc.plan.bodyDone
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
		// A request that must not be sent twice does not go out on a pooled
		// connection the backend has already closed: get checks for that.
		bc, reused, err := b.get(start, !req.replayable())
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
		cc.plan.setCookie = ""
		if cfg.StickyCookie && b.cookie != "" && (!req.hasCookie || string(req.cookie) != b.cookie) {
			cc.plan.setCookie = b.cookie
		}
		res, keep := cc.exchange(cfg, b, bc, reused, start)
		if cc.end.IsZero() {
			cc.end = time.Now()
		}
		res.Duration = cc.end.Sub(start)
		cc.failure = res.Failure
		cfg.Router.Done(b, res)
		return keep
	}
}

// exchangePlan is what route decided about a request before the exchange: how its body
// is sent and what the client connection may do afterwards. It lives in the
// clientConn, so passing it costs nothing.
type exchangePlan struct {
	mode       bodyMode // how the request body is delimited
	inline     int      // body bytes already in cc.out, after the head
	bodyDone   bool     // cc.out holds the whole request
	upgrade    bool     // the request asks for an upgrade the proxy will tunnel
	clientKeep bool     // the client connection may serve another request
	setCookie  string   // NB_SRVID value to set on the response, or ""
}

// exchange sends the request in cc.out on bc and relays the response. It owns bc: it
// pools or closes it. A pooled connection the backend turns out to have closed is
// replaced by a new one once, when that is safe: when none of the request was written,
// or when the request may be sent twice (request.replayable). Otherwise the backend
// may have acted on it before closing, and the client gets 502.
func (cc *clientConn) exchange(cfg *Config, b *Backend, bc *backendConn, reused bool, now time.Time) (res Result, keep bool) {
	p := &cc.plan
	streaming := !p.bodyDone
	var end int
	// At most two passes: both ways back to the top need reused, which a resend clears.
	for {
		firstErr, werr, wrote := cc.sendHead(cfg, bc, reused, now)
		if werr != nil {
			bc.close()
			if !resendAfterWriteFailure(&cc.req, reused, wrote) {
				res.Failure = FailProtocol
				return res, cc.fail(cfg, 502, p.clientKeep && p.bodyDone)
			}
			// A pooled connection the backend had closed: once more on a new one.
			var err error
			if bc, err = b.dial(); err != nil {
				res.Failure = FailConnect
				return res, cc.fail(cfg, 502, p.clientKeep && p.bodyDone)
			}
			reused = false
			continue
		}
		res.ReqBytes = int64(len(cc.out))
		// The wait for the response head is bounded from here. Set before the body
		// streamer starts: the streamer wakes that wait with a deadline in the past
		// when the client fails, and a deadline set after it would replace the wake-up
		// (the wait would then last the whole header timeout for an answer the backend
		// cannot send while it waits for the body).
		setReadDeadline(bc.c, &bc.r.dl, now, cfg.Timeouts.BackendResponseHeader)
		if streaming {
			cc.startRequestBody(cfg, bc)
		}
		var sawInterim bool
		var err error
		end, sawInterim, err = cc.readFinalHead(cfg, bc, firstErr, &res)
		if err == nil {
			break
		}
		if err == errInterimNotRelayed {
			return cc.finish(bc, streaming, res, FailClientAbort)
		}
		bodyErr := error(nil)
		if streaming {
			bodyErr = cc.stopRequestBody(bc)
		}
		bc.close()
		if resendAfterReadFailure(&cc.req, reused, streaming, sawInterim, res.RespBytes, err) {
			if bc, err = b.dial(); err != nil {
				res.Failure = FailConnect
				return res, cc.fail(cfg, 502, p.clientKeep)
			}
			reused = false
			continue
		}
		return cc.headFailed(cfg, err, bodyErr, streaming, res)
	}
	resp := &cc.resp
	if resp.status == 101 {
		if !p.upgrade || streaming {
			res, _ = cc.finish(bc, streaming, res, FailProtocol)
			return res, cc.fail(cfg, 502, false)
		}
		return cc.tunnelUpgrade(cfg, bc, end, res)
	}
	res.Status, cc.status = resp.status, resp.status
	fr := responseFraming(&cc.req, resp, p.clientKeep)
	if streaming && fr.clientKeep && !cc.waitRequestBody() {
		// The backend answered before the upload ended; the connection cannot be
		// reused since the rest of the upload will not be read.
		fr.clientKeep = false
	}
	if cc.stopping.Load() {
		fr.clientKeep = false
	}
	return cc.relayResponse(cfg, b, bc, end, streaming, fr, res)
}

// resendAfterWriteFailure reports whether a request whose write failed may be sent once
// more on a new connection: only on a pooled connection (which the backend may have
// closed while it was idle; a failure on a new one is the backend's), and only if none
// of it was written or it may run twice.
func resendAfterWriteFailure(req *request, reused, wrote bool) bool {
	return reused && (!wrote || req.replayable())
}

// resendAfterReadFailure reports whether a request sent whole on a pooled connection
// whose response head could not be read (err) may be sent once more on a new one: the
// backend closed or reset the connection before answering anything. It may have
// closed on seeing the request or while processing it, which cannot be told apart, so
// only a request that may run twice qualifies. A streamed body cannot be sent again.
func resendAfterReadFailure(req *request, reused, streaming, sawInterim bool, respBytes int64, err error) bool {
	return reused && !streaming && !sawInterim && respBytes == 0 && !isTimeout(err) && isClosedByPeer(err) &&
		req.replayable()
}

// startRequestBody starts the streamer of the rest of the request body to bc.
func (cc *clientConn) startRequestBody(cfg *Config, bc *backendConn) {
	remaining := int64(0)
	if cc.plan.mode == bodyLength {
		remaining = cc.req.contentLength - int64(cc.plan.inline)
	}
	cc.bodyFail.Store(0)
	go cc.streamRequestBody(cfg, bc, cc.plan.mode, remaining)
}

// headFailed answers a request whose response head could not be read: err is
// readFinalHead's, bodyErr the request body streamer's.
func (cc *clientConn) headFailed(cfg *Config, err, bodyErr error, streaming bool, res Result) (Result, bool) {
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
	}
	res.Failure = FailProtocol
	return res, cc.fail(cfg, 502, cc.plan.clientKeep && !streaming)
}

// sendHead writes cc.out (the head and any inline body) to bc. On a fresh or briefly
// pooled connection with nothing left to send after it, the write and the wait for the
// first bytes of the answer share one poller registration (rawSend); firstErr is then a
// failed first read, which readFinalHead reports like any failed read of the head.
// werr is a failed write; wrote says whether any of cc.out was written.
func (cc *clientConn) sendHead(cfg *Config, bc *backendConn, reused bool, now time.Time) (firstErr, werr error, wrote bool) {
	t := &cfg.Timeouts
	if cc.plan.bodyDone && bc.send.rc != nil && bc.r.n() == 0 && (!reused || now.Sub(bc.idleSince) < rawSendMaxIdle) {
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
		return firstErr, werr, bc.send.written > 0
	}
	setWriteDeadline(bc.c, &bc.wdl, now, t.Backend)
	n, werr := bc.c.Write(cc.out)
	return nil, werr, n > 0
}

// errInterimNotRelayed ends an exchange whose client went away while an interim (1xx)
// response was relayed to it.
var errInterimNotRelayed = errors.New("httpproxy: interim response not relayed")

// readFinalHead reads the response head into cc.resp (under the read deadline the
// caller set) and returns its length, relaying interim (1xx) responses to HTTP/1.1
// clients on the way; a 101 is final. firstErr is
// sendHead's. err is a failed read, a malformed head (errMalformedResponse) or
// errInterimNotRelayed; sawInterim says whether an interim response came first.
func (cc *clientConn) readFinalHead(cfg *Config, bc *backendConn, firstErr error, res *Result) (end int, sawInterim bool, err error) {
	for {
		if firstErr != nil {
			return 0, sawInterim, firstErr
		}
		end, err = readHead(&bc.r, max(len(bc.r.buf), bc.r.max))
		if err != nil {
			return 0, sawInterim, err
		}
		res.RespBytes += int64(end)
		if parseResponse(bc.r.buffered()[:end], &cc.resp) != nil {
			return 0, sawInterim, errMalformedResponse
		}
		if cc.resp.status >= 200 || cc.resp.status == 101 {
			return end, sawInterim, nil
		}
		sawInterim = true
		if cc.req.minor == 1 {
			cc.out = appendResponseHead(cc.out[:0], &cc.resp, &cc.req, frameNone, true, "", false)
			if err := cc.write(cfg, cc.out); err != nil {
				return 0, sawInterim, errInterimNotRelayed
			}
		}
		bc.r.consume(end)
	}
}

// framing is how a response body is read from the backend and sent to the client, and
// which connections may serve another request afterwards.
type framing struct {
	in          bodyMode    // from the backend
	out         respFraming // to the client
	clientKeep  bool
	backendKeep bool
}

// responseFraming decides the framing of a final response to req. clientKeep is what
// the request allows; the response may take it away (a body delimited by the close,
// or chunks an HTTP/1.0 client cannot read and must get decoded until the close).
func responseFraming(req *request, resp *response, clientKeep bool) framing {
	f := framing{in: bodyNone, out: frameNone, clientKeep: clientKeep,
		backendKeep: !resp.connClose && (resp.minor == 1 || resp.connKeepAlive)}
	if req.isHead || resp.status == 204 || resp.status == 304 {
		return f
	}
	switch {
	case resp.chunked:
		f.in, f.out = bodyChunked, frameChunked
		if req.minor == 0 {
			f.out, f.clientKeep = frameDechunk, false
		}
	case resp.contentLength >= 0:
		f.in, f.out = bodyLength, frameLength
	default:
		f.in, f.out, f.clientKeep, f.backendKeep = bodyUntilClose, frameClose, false, false
	}
	return f
}

// relayResponse sends the final response head (cc.resp, end bytes at the start of bc's
// buffer) and its body to the client, then pools or closes bc.
func (cc *clientConn) relayResponse(cfg *Config, b *Backend, bc *backendConn, end int, streaming bool, fr framing, res Result) (Result, bool) {
	resp := &cc.resp
	t := &cfg.Timeouts
	out := appendResponseHead(cc.out[:0], resp, &cc.req, fr.out, fr.clientKeep, cc.plan.setCookie, cfg.Scheme == "https")
	bc.r.consume(end)
	// Whatever body is already buffered goes out with the head.
	out, remaining, complete, err := cc.appendBufferedBody(out, bc, fr, &res)
	cc.out = out
	if err != nil {
		// Send nothing of a malformed body: the client sees a 502.
		res, _ = cc.finish(bc, streaming, res, FailProtocol)
		return res, cc.fail(cfg, 502, false)
	}
	// One clock read serves the write deadline, the pool, the durations and the next
	// idle deadline.
	cc.end = time.Now()
	if complete && !streaming && fr.backendKeep && fr.in != bodyUntilClose {
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
		return res, fr.clientKeep
	}
	if !complete {
		n, srcErr, dstErr := copyBody(&bc.r, t.Backend, cc.c, &cc.wdl, t.Client, fr.in, remaining,
			&cc.respCS, fr.out == frameDechunk, nil, 0)
		res.RespBytes += n
		cc.sentResp += n
		switch {
		case dstErr != nil:
			return cc.finish(bc, streaming, res, FailClientAbort)
		case srcErr != nil && fr.in == bodyUntilClose && errors.Is(srcErr, io.EOF):
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
			fr.backendKeep, fr.clientKeep = false, false
		}
		res.ReqBytes += cc.bodySent - int64(cc.plan.inline)
	}
	cc.end = time.Now() // the body streamed: the head's time is out of date
	if fr.backendKeep && fr.in != bodyUntilClose {
		b.put(bc, cc.end)
	} else {
		bc.close()
	}
	return res, fr.clientKeep
}

// appendBufferedBody appends the part of the response body already in bc's buffer to
// out. It returns how much of a Content-Length body is still to come, whether the body
// is complete, and an error for malformed chunked framing.
func (cc *clientConn) appendBufferedBody(out []byte, bc *backendConn, fr framing, res *Result) (_ []byte, remaining int64, complete bool, err error) {
	remaining = cc.resp.contentLength
	switch fr.in {
	case bodyNone:
		return out, remaining, true, nil
	case bodyLength:
		k := int(min(remaining, int64(bc.r.n())))
		out = append(out, bc.r.buffered()[:k]...)
		bc.r.consume(k)
		res.RespBytes += int64(k)
		remaining -= int64(k)
		return out, remaining, remaining == 0, nil
	case bodyChunked:
		cc.respCS.reset()
		if fr.out != frameChunked {
			return out, remaining, false, nil
		}
		buf := bc.r.buffered()
		k := 0
		for k < len(buf) && !cc.respCS.done() {
			m, _, err := cc.respCS.next(buf[k:])
			if err != nil {
				return out, remaining, false, err
			}
			k += m
		}
		out = append(out, buf[:k]...)
		bc.r.consume(k)
		res.RespBytes += int64(k)
		return out, remaining, cc.respCS.done(), nil
	}
	// bodyUntilClose
	out = append(out, bc.r.buffered()...)
	res.RespBytes += int64(bc.r.n())
	bc.r.consume(bc.r.n())
	return out, remaining, false, nil
}

// replayable reports whether the request may reach the backend twice, by the rule of
// Go's net/http client: a GET, HEAD, OPTIONS or TRACE, or a request carrying an
// Idempotency-Key (or X-Idempotency-Key) field. PUT and DELETE are idempotent by
// definition but, as in net/http, not trusted to be so in practice. Only called when a
// resend or a pooled connection is considered: a GET answers at the first comparison.
func (req *request) replayable() bool {
	switch string(req.method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	for k := range req.headers {
		if n := req.headers[k].name; eqFold(n, "idempotency-key") || eqFold(n, "x-idempotency-key") {
			return true
		}
	}
	return false
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
