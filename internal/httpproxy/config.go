package httpproxy

import (
	"net/netip"
	"time"
)

// Router picks a backend for each request. The data plane implements it for each
// configuration snapshot (balancing algorithm, stickiness, node modes and health).
//
// Every non-nil Backend that Route returns is followed by exactly one Done for it, so a
// Router can count active requests (least connections) by incrementing in Route and
// decrementing in Done. Both are called on the request's goroutine and must not block.
type Router interface {
	// Route returns the backend for a request from client. cookie is the value of the
	// NB_SRVID cookie (nil when absent or when stickiness is off); it is only valid
	// during the call. tried is the backend whose connect just failed (nil on the first
	// try). Route returns nil when no backend may take the request: the client gets 503.
	Route(client netip.Addr, cookie []byte, tried *Backend) *Backend
	// Done reports the outcome of one attempt on b.
	Done(b *Backend, r Result)
}

// Failure says why an attempt on a backend failed.
type Failure uint8

// Failures, from the proxy's point of view.
const (
	FailNone        Failure = iota // the backend answered (Result.Status says how)
	FailConnect                    // connect refused, unreachable or timed out
	FailTimeout                    // no response head within the response-header timeout, or the body stalled
	FailProtocol                   // reset, early close or a malformed response
	FailClientAbort                // the client went away or sent a bad body; not the backend's fault
)

// Result is the outcome of one attempt on a backend, reported through Router.Done.
type Result struct {
	Failure   Failure
	Status    int           // status code of the final response; 0 when there was none
	ReqBytes  int64         // bytes sent to the backend (head and body)
	RespBytes int64         // bytes received from the backend (head and body)
	Duration  time.Duration // from the attempt's start to its end
}

// Failed reports whether the attempt counts against the backend's health for passive
// checks: a connect failure, a timeout, a broken or malformed response, or a 5xx status
// other than 501 and 505 (which say the backend does not implement something, as on
// Linode).
func (r Result) Failed() bool {
	switch r.Failure {
	case FailConnect, FailTimeout, FailProtocol:
		return true
	case FailClientAbort:
		return false
	}
	return r.Status >= 500 && r.Status <= 599 && r.Status != 501 && r.Status != 505
}

// Timeouts bounds every wait of the proxy. A zero field takes the default shown; a
// negative one disables that timeout.
type Timeouts struct {
	// ClientHeader bounds reading a request head from its first byte (slowloris
	// defence); on expiry the client gets 408 and the connection closes. It also
	// bounds the wait for a new connection's first request (then the connection
	// closes without an answer). Default 10s.
	ClientHeader time.Duration
	// ClientIdle bounds the wait for the next request on a keep-alive connection,
	// after the first. Default 60s.
	ClientIdle time.Duration
	// Client bounds each wait while reading a request body from or writing a response
	// to the client (inactivity, not total time). Default 30s.
	Client time.Duration
	// BackendResponseHeader bounds the wait for the response head once the request is
	// sent; on expiry the client gets 504. Default 60s.
	BackendResponseHeader time.Duration
	// Backend bounds each wait while writing a request to or reading a response body
	// from the backend (inactivity). Default 60s.
	Backend time.Duration
	// Tunnel bounds inactivity on an upgraded (WebSocket) connection. Default 1h.
	Tunnel time.Duration
}

// Default timeouts, chosen like the usual production proxies (HAProxy's and nginx's
// documented recommendations): short for what clients control before a request is known,
// generous for backends that are slow to answer.
const (
	DefaultClientHeaderTimeout   = 10 * time.Second
	DefaultClientIdleTimeout     = 60 * time.Second
	DefaultClientTimeout         = 30 * time.Second
	DefaultBackendResponseHeader = 60 * time.Second
	DefaultBackendTimeout        = 60 * time.Second
	DefaultTunnelTimeout         = time.Hour
	// DefaultMaxHeaderBytes bounds a request head, like HAProxy's 16 KiB buffer;
	// larger request heads get 431.
	DefaultMaxHeaderBytes = 16 << 10
	// DefaultConnectRetries is how many other backends are tried after a connect failure.
	DefaultConnectRetries = 2
)

// AccessEntry describes one finished request for the access-log hook.
type AccessEntry struct {
	Start     time.Time
	Duration  time.Duration
	Client    netip.AddrPort
	Local     netip.AddrPort
	Method    string
	Target    string
	Status    int      // status sent to the client (including the proxy's own errors)
	Backend   *Backend // nil when none was chosen or reached
	ReqBytes  int64    // request bytes read from the client
	RespBytes int64    // response bytes written to the client
	Failure   Failure
}

// Config is the immutable per-listener configuration. A Server swaps whole Configs
// atomically; a request keeps the Config it started with until it ends.
type Config struct {
	// Router chooses backends. A nil Router answers every request with 503.
	Router Router
	// Scheme is what X-Forwarded-Proto and Forwarded say: "http" (default) or "https".
	Scheme string
	// StickyCookie enables the NB_SRVID cookie: its value is passed to Route, and a
	// response from a backend other than the one it names sets it.
	StickyCookie bool
	// MaxHeaderBytes bounds a request head (DefaultMaxHeaderBytes if 0; at least
	// 1 KiB); it is also each client connection's read buffer. Response heads are
	// bounded by the 32 KiB backend buffer.
	MaxHeaderBytes int
	// ConnectRetries is how many more backends are tried after connect failures
	// (DefaultConnectRetries if 0; negative for none).
	ConnectRetries int
	// Timeouts bounds every wait.
	Timeouts Timeouts
	// AccessLog, when set, is called after each request on the request's goroutine; it
	// must not block (hand the entry to a channel or a buffered logger).
	AccessLog func(AccessEntry)
	// LogRequestLine fills in AccessEntry.Method and Target. Copying them out of the
	// connection's buffer costs two allocations per request, so an AccessLog that only
	// counts leaves it off.
	LogRequestLine bool
}

// normalized returns a copy of c with defaults filled in.
func (c *Config) normalized() *Config {
	n := *c
	if n.Scheme != "https" {
		n.Scheme = "http"
	}
	if n.MaxHeaderBytes <= 0 {
		n.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if n.MaxHeaderBytes < 1024 {
		n.MaxHeaderBytes = 1024
	}
	switch {
	case n.ConnectRetries == 0:
		n.ConnectRetries = DefaultConnectRetries
	case n.ConnectRetries < 0:
		n.ConnectRetries = 0
	}
	t := &n.Timeouts
	t.ClientHeader = orDefault(t.ClientHeader, DefaultClientHeaderTimeout)
	t.ClientIdle = orDefault(t.ClientIdle, DefaultClientIdleTimeout)
	t.Client = orDefault(t.Client, DefaultClientTimeout)
	t.BackendResponseHeader = orDefault(t.BackendResponseHeader, DefaultBackendResponseHeader)
	t.Backend = orDefault(t.Backend, DefaultBackendTimeout)
	t.Tunnel = orDefault(t.Tunnel, DefaultTunnelTimeout)
	return &n
}

// orDefault maps 0 to def and negative (disabled) to 0, which the deadline helpers
// treat as "no deadline".
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}
