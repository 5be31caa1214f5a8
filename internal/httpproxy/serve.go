package httpproxy

// Hot path: the Server and ServeConn, where every client connection starts. The rest of
// the per-connection path is in conn.go (connection state, request heads), rawloop.go
// (the plain TCP keep-alive loop), exchange.go (one request's way to a backend and
// back) and body.go (bodies).

import (
	"context"
	"log/slog"
	"net"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Server proxies HTTP/1.x client connections of one listener to backends. It holds no
// connection state of its own: the data plane accepts connections and hands each to
// ServeConn on its own goroutine.
type Server struct {
	cfg    atomic.Pointer[Config]
	logger *slog.Logger
	noPark atomic.Bool // SetParking(false)

	stopMu    sync.Mutex // guards stopSets and ended; taken once per connection of ServeConnAsync
	stopSets  map[context.Context]*stopSet
	lastStops atomic.Pointer[stopSet] // the one made last, looked up without the lock
	ended     []*stopSet              // sets whose context ended, while connections may be left in them (CloseConns)

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
		cc.serveRaw() // never parks: cc.pc is nil
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
