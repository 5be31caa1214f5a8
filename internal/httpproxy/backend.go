package httpproxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"
)

// BackendOptions configures a Backend. Zero fields take the defaults shown.
type BackendOptions struct {
	// Cookie is the opaque NB_SRVID value that names this backend to sticky clients.
	Cookie string
	// Data is the data plane's own value for this backend (its node, counters, ...);
	// the proxy never looks at it.
	Data any
	// DialTimeout bounds a connect. Default 5s.
	DialTimeout time.Duration
	// LocalAddr, when valid, is the source address of backend connections
	// (--backend-source).
	LocalAddr netip.Addr
	// MaxIdle bounds the idle keep-alive connections kept for reuse. Default 128;
	// negative disables pooling.
	MaxIdle int
	// IdleTimeout is how long an idle pooled connection is kept. Default 4s: below the
	// 5s keep-alive timeout of Apache httpd and Node.js, so the proxy normally closes an
	// idle connection before the backend does and rarely sends into a closing one.
	IdleTimeout time.Duration
}

// Defaults for BackendOptions.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultMaxIdle     = 128
	DefaultIdleTimeout = 4 * time.Second
	// backendBufferSize is what the read buffer of a backend connection may grow to
	// (it starts at initialReadBuffer: see connReader); it also bounds a response head.
	backendBufferSize = 32 << 10
)

// Backend is one upstream (a node's ip:port) with its pool of idle keep-alive
// connections. The data plane creates one per node and keeps it while the node's
// address is unchanged, across configuration changes, so the pool survives them.
type Backend struct {
	addr    netip.AddrPort
	addrStr string
	cookie  string
	data    any
	dialer  net.Dialer
	maxIdle int
	idleTO  time.Duration

	mu     sync.Mutex
	idle   []*backendConn // oldest first
	closed bool
	reaper *time.Timer
	armed  bool
}

// NewBackend returns the backend for addr.
func NewBackend(addr netip.AddrPort, opts BackendOptions) *Backend {
	b := &Backend{
		addr:    addr,
		addrStr: addr.String(),
		cookie:  opts.Cookie,
		data:    opts.Data,
		maxIdle: opts.MaxIdle,
		idleTO:  orDefault(opts.IdleTimeout, DefaultIdleTimeout),
	}
	b.dialer.Timeout = orDefault(opts.DialTimeout, DefaultDialTimeout)
	b.dialer.KeepAlive = -1 // pooled connections live seconds: probes would only cost syscalls
	if opts.LocalAddr.IsValid() {
		b.dialer.LocalAddr = &net.TCPAddr{IP: opts.LocalAddr.AsSlice(), Zone: opts.LocalAddr.Zone()}
	}
	switch {
	case b.maxIdle == 0:
		b.maxIdle = DefaultMaxIdle
	case b.maxIdle < 0:
		b.maxIdle = 0
	}
	if b.idleTO == 0 {
		b.maxIdle = 0
	}
	return b
}

// Addr returns the backend's address.
func (b *Backend) Addr() netip.AddrPort { return b.addr }

// Cookie returns the NB_SRVID value naming this backend.
func (b *Backend) Cookie() string { return b.cookie }

// Data returns the value given in BackendOptions.Data.
func (b *Backend) Data() any { return b.data }

// IdleConns returns the number of pooled idle connections.
func (b *Backend) IdleConns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.idle)
}

// Close closes the idle connections and stops pooling: connections in use are closed
// when their request ends. Call it when the node is removed.
func (b *Backend) Close() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.closed = true
	if b.reaper != nil {
		b.reaper.Stop()
	}
	b.mu.Unlock()
	for _, bc := range idle {
		bc.close()
	}
}

// backendConn is one connection to a backend with its read buffer.
type backendConn struct {
	b         *Backend
	c         net.Conn
	r         connReader
	wdl       deadline
	idleSince time.Time
	send      rawSend // nil rc when c is not a plain TCP connection
}

var backendBufPool = sync.Pool{New: func() any { b := make([]byte, initialReadBuffer); return &b }}

func (bc *backendConn) close() {
	bc.c.Close()
	if bc.r.buf != nil {
		buf := bc.r.buf[:cap(bc.r.buf)]
		bc.r.buf = nil
		backendBufPool.Put(&buf)
	}
}

// get returns an idle pooled connection (reused=true) or dials a new one. With check,
// a pooled connection is first tested (closedWhileIdle) and passed over when the
// backend has closed it: for requests that cannot be resent after a failure.
func (b *Backend) get(now time.Time, check bool) (bc *backendConn, reused bool, err error) {
	for {
		if bc = b.takeIdle(now); bc == nil {
			break
		}
		if !check || !bc.closedWhileIdle() {
			return bc, true, nil
		}
		bc.close()
	}
	bc, err = b.dial()
	return bc, false, err
}

// takeIdle returns the newest pooled connection, or nil when none is fresh.
func (b *Backend) takeIdle(now time.Time) *backendConn {
	b.mu.Lock()
	n := len(b.idle)
	if n == 0 {
		b.mu.Unlock()
		return nil
	}
	bc := b.idle[n-1]
	b.idle[n-1] = nil
	b.idle = b.idle[:n-1]
	if now.Sub(bc.idleSince) < b.idleTO {
		b.mu.Unlock()
		return bc
	}
	// The newest idle connection has expired, so all have: the reaper is late.
	stale := append([]*backendConn(nil), b.idle...)
	clear(b.idle)
	b.idle = b.idle[:0]
	b.mu.Unlock()
	bc.close()
	for _, s := range stale {
		s.close()
	}
	return nil
}

// closedWhileIdle reports whether the backend closed (or reset) the pooled connection,
// or sent something unasked, while it was idle: one non-blocking read. It costs a
// system call, so it is spent only on requests that cannot be resent.
func (bc *backendConn) closedWhileIdle() bool {
	if bc.r.n() > 0 {
		return true
	}
	if bc.send.rc == nil {
		return false
	}
	bc.send.dead = false
	if bc.send.rc.Read(bc.send.peekFn) != nil {
		return true
	}
	return bc.send.dead
}

// dial opens a new connection. It is not tied to the client's context: a graceful stop
// lets in-flight requests finish.
func (b *Backend) dial() (*backendConn, error) {
	c, err := b.dialer.DialContext(context.Background(), "tcp", b.addrStr)
	if err != nil {
		return nil, err
	}
	bp := backendBufPool.Get().(*[]byte)
	bc := &backendConn{b: b, c: c}
	bc.r = connReader{conn: c, buf: *bp, max: backendBufferSize}
	if tc, ok := c.(*net.TCPConn); ok {
		bc.send.rc, _ = tc.SyscallConn()
		bc.send.r = &bc.r
		bc.send.fn = bc.send.step // bound once: no allocation per request
		bc.send.peekFn = bc.send.peek
	}
	return bc, nil
}

// put returns a connection whose last exchange ended cleanly to the pool, or closes it.
func (b *Backend) put(bc *backendConn, now time.Time) {
	b.mu.Lock()
	if b.closed || len(b.idle) >= b.maxIdle {
		b.mu.Unlock()
		bc.close()
		return
	}
	bc.idleSince = now
	b.idle = append(b.idle, bc)
	if !b.armed {
		b.armed = true
		if b.reaper == nil {
			b.reaper = time.AfterFunc(b.idleTO, b.reap)
		} else {
			b.reaper.Reset(b.idleTO)
		}
	}
	b.mu.Unlock()
}

// reap closes idle connections past IdleTimeout, so pooled sockets do not linger after
// traffic stops.
func (b *Backend) reap() {
	now := time.Now()
	b.mu.Lock()
	k := 0
	for k < len(b.idle) && now.Sub(b.idle[k].idleSince) >= b.idleTO {
		k++
	}
	var expired []*backendConn
	if k > 0 {
		expired = make([]*backendConn, k)
		copy(expired, b.idle[:k])
		n := copy(b.idle, b.idle[k:])
		clear(b.idle[n:])
		b.idle = b.idle[:n]
	}
	if len(b.idle) > 0 && !b.closed {
		b.reaper.Reset(b.idleTO - now.Sub(b.idle[0].idleSince))
	} else {
		b.armed = false
	}
	b.mu.Unlock()
	for _, bc := range expired {
		bc.close()
	}
}
