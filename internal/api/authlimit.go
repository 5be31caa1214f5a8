package api

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Failed-authentication throttle: each client address may fail AuthBurst times at
// once, and earns one more failure every AuthRefill (the count decays); past that,
// requests with a bad token are answered 429 with Retry-After. A valid token is never
// throttled, from any address: only the failure path reaches this code, so valid
// requests take no lock beyond the token cache's and a team behind one NAT address is
// not locked out by one client's bad script.
const (
	AuthBurst  = 20
	AuthRefill = time.Second
	// maxAuthClients bounds the table. When it is full of addresses that have not
	// decayed, a bad token from a new address is answered 429 at once.
	maxAuthClients = 1 << 16
)

// authLimiter counts failed authentications per client address (an IPv6 client's
// /64, which one host usually holds whole).
type authLimiter struct {
	mu        sync.Mutex
	clients   map[netip.Addr]*authBucket
	lastEvict time.Time
}

// authBucket is a token bucket of allowed failures.
type authBucket struct {
	left float64 // failures still allowed now
	at   time.Time
}

// clientKey is the address failures are counted against.
func clientKey(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return a
}

// fail records a failed authentication by key at now. It returns 0 when the failure
// is within the allowance, else how long the client should wait.
func (l *authLimiter) fail(key netip.Addr, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[key]
	if b == nil {
		if len(l.clients) >= maxAuthClients && !l.evict(now) {
			return AuthRefill
		}
		if l.clients == nil {
			l.clients = map[netip.Addr]*authBucket{}
		}
		b = &authBucket{left: AuthBurst, at: now}
		l.clients[key] = b
	}
	b.refill(now)
	if b.left >= 1 {
		b.left--
		return 0
	}
	return time.Duration(math.Ceil((1 - b.left) * float64(AuthRefill)))
}

func (b *authBucket) refill(now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.left = min(AuthBurst, b.left+float64(d)/float64(AuthRefill))
		b.at = now
	}
}

// evict forgets the addresses whose failures have fully decayed, reporting whether
// any went. It walks the table at most once per AuthRefill, so a flood from many
// addresses cannot make every failure pay for a walk. l.mu is held.
func (l *authLimiter) evict(now time.Time) bool {
	if now.Sub(l.lastEvict) < AuthRefill {
		return false
	}
	l.lastEvict = now
	n := len(l.clients)
	for k, b := range l.clients {
		if b.refill(now); b.left >= AuthBurst {
			delete(l.clients, k)
		}
	}
	return len(l.clients) < n
}

// authFailed answers a request whose token is not valid: 401, or 429 with
// Retry-After once its address has failed too often.
func (a *API) authFailed(c *call) error {
	wait := a.authLimit.fail(clientKey(c.r), a.o.Now())
	if wait == 0 {
		return errUnauthorized
	}
	secs := int(math.Ceil(wait.Seconds()))
	c.w.Header().Set("Retry-After", strconv.Itoa(secs))
	return &apiError{http.StatusTooManyRequests, model.Errors{{
		Reason: "Too many failed authentication attempts from this address; retry after " + strconv.Itoa(secs) + " seconds",
	}}}
}
