package httpproxy

// HTTP/2 clients (TLS with ALPN "h2") are served by net/http's HTTP/2 server and
// forwarded with httputil.ReverseProxy through the same Router and Backends, to the
// backends in HTTP/1.1. This path is not the lean one: it exists so that h2 clients work,
// not to win benchmarks.

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// HTTP2Handler returns an http.Handler that forwards each request through the Server's
// current Config (Router, Scheme, stickiness, timeouts, access log), with the same
// forwarding headers as the HTTP/1.1 path. r.RemoteAddr must be the client's address.
func (s *Server) HTTP2Handler() http.Handler {
	s.h2once.Do(func() {
		t := &h2Transport{s: s}
		t.tr = &http.Transport{
			DialContext:         t.dial,
			MaxIdleConnsPerHost: DefaultMaxIdle,
			IdleConnTimeout:     DefaultIdleTimeout,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		}
		s.h2 = &httputil.ReverseProxy{
			Rewrite:        h2Rewrite,
			Transport:      t,
			ModifyResponse: h2ModifyResponse,
			ErrorHandler:   h2Error,
			// Failures are reported through Router.Done and the access log; what
			// ReverseProxy would print goes to the debug level.
			ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		}
	})
	return http.HandlerFunc(s.serveH2)
}

// h2State is the per-request state shared by the handler, the transport and the
// response hooks.
type h2State struct {
	cfg     *Config
	client  netip.AddrPort
	cookie  []byte
	backend *Backend
	start   time.Time
	status  int
	fail    Failure
	reqN    int64
	respN   int64
}

type h2Key struct{}

func (s *Server) serveH2(w http.ResponseWriter, r *http.Request) {
	st := &h2State{cfg: s.cfg.Load(), start: time.Now()}
	st.client, _ = netip.ParseAddrPort(r.RemoteAddr)
	st.client = netip.AddrPortFrom(st.client.Addr().Unmap(), st.client.Port())
	if st.cfg.StickyCookie {
		for _, v := range r.Header.Values("Cookie") {
			if c, ok := findCookie([]byte(v), stickyCookieName); ok {
				st.cookie = c
				break
			}
		}
	}
	cw := &countingWriter{ResponseWriter: w}
	s.h2.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), h2Key{}, st)))
	if st.cfg.AccessLog != nil {
		st.cfg.AccessLog(AccessEntry{
			Start: st.start, Duration: time.Since(st.start), Client: st.client,
			Method: r.Method, Target: r.RequestURI, Status: cw.status, Backend: st.backend,
			ReqBytes: st.reqN, RespBytes: cw.n, Failure: st.fail,
		})
	}
}

// h2Rewrite sets the forwarding headers; the backend is chosen by the transport.
func h2Rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(h2Key{}).(*h2State)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "backend.invalid" // replaced by the transport
	pr.Out.Host = pr.In.Host
	ip := st.client.Addr().String()
	xff := ip
	if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + ip
	}
	pr.Out.Header.Set("X-Forwarded-For", xff)
	pr.Out.Header.Set("X-Forwarded-Proto", st.cfg.Scheme)
	pr.Out.Header.Set("X-Real-IP", ip)
	fwd := "for=" + ip
	if st.client.Addr().Is6() {
		fwd = `for="[` + ip + `]"`
	}
	fwd += ";proto=" + st.cfg.Scheme
	if prior := pr.In.Header.Values("Forwarded"); len(prior) > 0 {
		fwd = strings.Join(prior, ", ") + ", " + fwd
	}
	pr.Out.Header.Set("Forwarded", fwd)
}

// h2Transport routes each request to a Backend, trying others after connect failures.
type h2Transport struct {
	s  *Server
	tr *http.Transport
}

type h2BackendKey struct{}

// errNoBackend is the transport's error when the Router has no backend.
var errNoBackend = errors.New("httpproxy: no backend available")

// dialErr marks a connect failure, which may be retried on another backend.
type dialErr struct{ err error }

func (e *dialErr) Error() string { return e.err.Error() }
func (e *dialErr) Unwrap() error { return e.err }

func (t *h2Transport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	b := ctx.Value(h2BackendKey{}).(*Backend)
	c, err := b.dialer.DialContext(ctx, "tcp", b.addrStr)
	if err != nil {
		return nil, &dialErr{err}
	}
	return c, nil
}

func (t *h2Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := req.Context().Value(h2Key{}).(*h2State)
	cfg := st.cfg
	if cfg.Router == nil {
		return nil, errNoBackend
	}
	var tried *Backend
	for attempt := 0; ; attempt++ {
		b := cfg.Router.Route(st.client.Addr(), st.cookie, tried)
		if b == nil {
			if tried != nil {
				return nil, &dialErr{errNoBackend}
			}
			return nil, errNoBackend
		}
		start := time.Now()
		ctx, cancel := context.WithCancelCause(context.WithValue(req.Context(), h2BackendKey{}, b))
		timer := time.AfterFunc(cfg.Timeouts.BackendResponseHeader, func() { cancel(errResponseTimeout) })
		if cfg.Timeouts.BackendResponseHeader <= 0 {
			timer.Stop()
		}
		out := req.Clone(ctx)
		out.URL.Host = b.addrStr
		if out.Body != nil && out.Body != http.NoBody {
			out.Body = &countingBody{ReadCloser: out.Body, n: &st.reqN}
		}
		resp, err := t.tr.RoundTrip(out)
		timer.Stop()
		var de *dialErr
		switch {
		case err == nil:
			st.backend, st.status = b, resp.StatusCode
			resp.Body = &h2Body{ReadCloser: resp.Body, st: st, b: b, start: start, cancel: cancel}
			return resp, nil
		case errors.As(err, &de) && attempt < cfg.ConnectRetries && st.reqN == 0:
			cancel(nil)
			cfg.Router.Done(b, Result{Failure: FailConnect, Duration: time.Since(start)})
			tried = b
			continue
		}
		f := FailProtocol
		switch {
		case errors.As(err, &de):
			f = FailConnect
		case context.Cause(ctx) == errResponseTimeout:
			f, err = FailTimeout, errResponseTimeout
		case req.Context().Err() != nil:
			f = FailClientAbort
		}
		cancel(nil)
		st.backend, st.fail = b, f
		cfg.Router.Done(b, Result{Failure: f, ReqBytes: st.reqN, Duration: time.Since(start)})
		return nil, err
	}
}

var errResponseTimeout = errors.New("httpproxy: backend response header timeout")

// h2ModifyResponse sets the sticky cookie when the response came from a backend other
// than the one the cookie named.
func h2ModifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(h2Key{}).(*h2State)
	if st.cfg.StickyCookie && st.backend != nil && st.backend.cookie != "" && string(st.cookie) != st.backend.cookie {
		resp.Header.Add("Set-Cookie", stickyCookieName+"="+st.backend.cookie+"; Path=/; HttpOnly; Secure") // h2 is only served over TLS
	}
	return nil
}

func h2Error(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(h2Key{}).(*h2State)
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, errResponseTimeout):
		code = http.StatusGatewayTimeout
	case err == errNoBackend:
		code = http.StatusServiceUnavailable
	}
	st.status = code
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, http.StatusText(code)+"\n")
}

// h2Body reports the attempt to the Router once the response body is done.
type h2Body struct {
	io.ReadCloser
	st     *h2State
	b      *Backend
	start  time.Time
	cancel context.CancelCauseFunc
	once   sync.Once
	err    error
}

func (hb *h2Body) Read(p []byte) (int, error) {
	n, err := hb.ReadCloser.Read(p)
	hb.st.respN += int64(n)
	if err != nil && err != io.EOF {
		hb.err = err
	}
	return n, err
}

func (hb *h2Body) Close() error {
	err := hb.ReadCloser.Close()
	hb.once.Do(func() {
		hb.cancel(nil)
		f := FailNone
		if hb.err != nil {
			f = FailProtocol
			if hb.st.fail == FailClientAbort {
				f = FailClientAbort
			}
		}
		hb.st.cfg.Router.Done(hb.b, Result{Failure: f, Status: hb.st.status, ReqBytes: hb.st.reqN,
			RespBytes: hb.st.respN, Duration: time.Since(hb.start)})
	})
	return err
}

type countingBody struct {
	io.ReadCloser
	n *int64
}

func (cb *countingBody) Read(p []byte) (int, error) {
	n, err := cb.ReadCloser.Read(p)
	*cb.n += int64(n)
	return n, err
}

// countingWriter records what the handler sent, for the access log.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (cw *countingWriter) WriteHeader(code int) {
	if cw.status == 0 {
		cw.status = code
	}
	cw.ResponseWriter.WriteHeader(code)
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	n, err := cw.ResponseWriter.Write(p)
	cw.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the underlying writer.
func (cw *countingWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// Flush forwards flushes, which ReverseProxy uses for streaming responses.
func (cw *countingWriter) Flush() {
	if f, ok := cw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// HTTP2Server serves HTTP/2 client connections (TLS connections that negotiated ALPN
// "h2") through a Server's routing. The TLS listener stays the data plane's: it hands
// each such connection to ServeConn.
type HTTP2Server struct {
	hs    *http.Server
	ln    *connListener
	mu    sync.Mutex
	conns map[net.Conn]chan struct{}
}

// NewHTTP2Server returns an HTTP/2 server forwarding through s. Its idle timeout is the
// Config's client idle timeout at creation.
func (s *Server) NewHTTP2Server() *HTTP2Server {
	h := &HTTP2Server{ln: newConnListener(), conns: make(map[net.Conn]chan struct{})}
	cfg := s.cfg.Load()
	h.hs = &http.Server{
		Handler:           s.HTTP2Handler(),
		ReadHeaderTimeout: cfg.Timeouts.ClientHeader,
		IdleTimeout:       cfg.Timeouts.ClientIdle,
		ConnState:         h.connState,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	go h.hs.Serve(h.ln) // ends when Shutdown closes the listener
	return h
}

// ServeConn serves c, which must have completed its handshake with ALPN "h2", and
// returns when the connection has closed. Cancelling ctx closes it gracefully (GOAWAY;
// streams in flight finish) through Shutdown.
func (h *HTTP2Server) ServeConn(ctx context.Context, c *tls.Conn) {
	done := make(chan struct{})
	h.mu.Lock()
	h.conns[c] = done
	h.mu.Unlock()
	if !h.ln.hand(c) {
		h.forget(c)
		c.Close()
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
		<-done // Shutdown, which the owner calls on stop, ends it
	}
}

// Shutdown stops accepting connections, asks open ones to finish (GOAWAY) and waits for
// them until ctx ends.
func (h *HTTP2Server) Shutdown(ctx context.Context) error {
	err := h.hs.Shutdown(ctx)
	if err != nil {
		h.hs.Close()
	}
	return err
}

func (h *HTTP2Server) connState(c net.Conn, state http.ConnState) {
	if state == http.StateClosed || state == http.StateHijacked {
		h.forget(c)
	}
}

func (h *HTTP2Server) forget(c net.Conn) {
	h.mu.Lock()
	done := h.conns[c]
	delete(h.conns, c)
	h.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// connListener is a net.Listener fed with already accepted connections.
type connListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{} }
