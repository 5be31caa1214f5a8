// Package throttle limits how many new connections each client address may
// open per second: a NodeBalancer's client_conn_throttle. It is pure (time is
// passed in, no sockets) and its Allow runs once per accepted connection.
//
// The limit is a sliding window, exact: a connection is allowed when the
// client had fewer than N connections allowed in the second before it
// (timestamps in (now−1 s, now]). A token bucket would let a client that
// waited open 2N connections within one second (a full bucket, then the
// refill); the window never does. Refused connections are not counted, so a
// client that keeps retrying is let in as soon as its oldest connection in the
// window is a second old.
//
// Memory is bounded. A client whose last allowed connection is a second old
// carries no information (a fresh record would decide the same), so such
// records are dropped when a full shard needs room. If a flood of
// addresses still fills the limiter, the record least recently allowed in a
// small random sample is dropped: that client may then open up to N more
// connections. This fails open on purpose: refusing unknown addresses
// instead would let a flood from many addresses lock out every new client.
package throttle

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Window is the period the limit applies to.
const Window = time.Second

// MaxPerSecond is the largest limit the API allows (client_conn_throttle).
const MaxPerSecond = 20

// Defaults of Options.
const (
	DefaultMaxClients = 1 << 16
	DefaultShards     = 64
)

// evictSample is how many records a full shard compares before dropping one
// whose client is still inside its window.
const evictSample = 8

// Options tunes a Limiter. Zero fields take the defaults.
type Options struct {
	// MaxClients bounds the number of client records (DefaultMaxClients).
	MaxClients int
	// Shards is the number of independently locked shards, rounded up to a
	// power of two and lowered so that each can hold a record (DefaultShards).
	Shards int
	// Seed mixes into the hash that assigns addresses to shards; zero picks a
	// random one.
	Seed uint64
}

// Limiter enforces a per-client-address limit on new connections per second.
// A nil *Limiter allows everything: it is what New returns for a limit of 0
// (off). It is safe for concurrent use. Each shard has its own mutex, so
// clients in different shards never contend; Allow for a client already known
// allocates nothing.
type Limiter struct {
	rate     int
	window   int64
	perShard int
	shift    uint
	seed     uint64
	shards   []shard
}

type shard struct {
	mu        sync.Mutex
	clients   map[[16]byte]*client
	nextSweep int64 // no record becomes idle before this
	_         [64]byte
}

// client is the ring of the times of a client's last rate allowed connections.
type client struct {
	times []int64
	next  int // index of the oldest time, overwritten by the next allowed connection
}

// never is the time of a connection that did not happen: older than any
// window.
const never = math.MinInt64

// newest returns the time of the client's most recent allowed connection.
func (c *client) newest() int64 {
	i := c.next - 1
	if i < 0 {
		i = len(c.times) - 1
	}
	return c.times[i]
}

// New returns a limiter allowing perSecond new connections per second per
// client address, or nil (allow everything) when perSecond is 0. It refuses a
// limit outside 0..MaxPerSecond.
func New(perSecond int, o Options) (*Limiter, error) {
	if perSecond < 0 || perSecond > MaxPerSecond {
		return nil, fmt.Errorf("client connection throttle %d outside 0..%d", perSecond, MaxPerSecond)
	}
	if perSecond == 0 {
		return nil, nil
	}
	if o.MaxClients <= 0 {
		o.MaxClients = DefaultMaxClients
	}
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64() | 1
	}
	n := 1
	for n < o.Shards && n*2 <= o.MaxClients {
		n *= 2
	}
	l := &Limiter{
		rate:     perSecond,
		window:   int64(Window),
		perShard: o.MaxClients / n,
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		seed:     o.Seed,
		shards:   make([]shard, n),
	}
	for i := range l.shards {
		l.shards[i].clients = make(map[[16]byte]*client)
	}
	return l, nil
}

// Allow reports whether client a may open a new connection at now (in
// nanoseconds, on a clock that does not go back) and, if so, counts it. IPv4
// addresses and their IPv4-mapped IPv6 forms are one client; zones are
// ignored.
func (l *Limiter) Allow(a netip.Addr, now int64) bool {
	if l == nil {
		return true
	}
	k := a.As16()
	sh := &l.shards[l.hash(k)>>l.shift]
	sh.mu.Lock()
	c := sh.clients[k]
	if c == nil {
		if len(sh.clients) >= l.perShard {
			l.makeRoom(sh, now)
		}
		c = &client{times: make([]int64, l.rate)}
		for i := range c.times {
			c.times[i] = never
		}
		sh.clients[k] = c
	}
	ok := c.times[c.next] <= now-l.window
	if ok {
		c.times[c.next] = now
		if c.next++; c.next == len(c.times) {
			c.next = 0
		}
	}
	sh.mu.Unlock()
	return ok
}

func (l *Limiter) hash(k [16]byte) uint64 {
	var hi, lo uint64
	for i := range 8 {
		hi = hi<<8 | uint64(k[i])
		lo = lo<<8 | uint64(k[8+i])
	}
	return mix64(mix64(hi^l.seed) ^ lo)
}

// mix64 is the SplitMix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// makeRoom frees at least one record of a full shard: the idle ones if any may
// be idle, else the least recently allowed of a random sample.
func (l *Limiter) makeRoom(sh *shard, now int64) {
	if now >= sh.nextSweep {
		l.sweepShard(sh, now)
	}
	if len(sh.clients) < l.perShard {
		return
	}
	var victim [16]byte
	oldest, seen := int64(math.MaxInt64), 0
	for k, c := range sh.clients { // map iteration starts at a random place
		if t := c.newest(); t < oldest {
			victim, oldest = k, t
		}
		if seen++; seen == evictSample {
			break
		}
	}
	delete(sh.clients, victim)
}

// sweepShard drops the shard's idle records and records when the next one
// can become idle.
func (l *Limiter) sweepShard(sh *shard, now int64) (removed int) {
	next := now + l.window
	for k, c := range sh.clients {
		if t := c.newest(); t <= now-l.window {
			delete(sh.clients, k)
			removed++
		} else {
			next = min(next, t+l.window)
		}
	}
	sh.nextSweep = next
	return removed
}

// Sweep drops the records of clients idle at now (no connection allowed in
// the last second) and returns how many it dropped. The data plane does not
// call it: memory is bounded by MaxClients and a full shard drops its idle
// records itself; Sweep is for a caller that wants that memory back sooner.
func (l *Limiter) Sweep(now int64) int {
	if l == nil {
		return 0
	}
	removed := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		removed += l.sweepShard(sh, now)
		sh.mu.Unlock()
	}
	return removed
}

// Len returns the number of client records held.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.clients)
		sh.mu.Unlock()
	}
	return n
}

// Cap returns the most client records the limiter holds: MaxClients rounded
// down to a multiple of the number of shards.
func (l *Limiter) Cap() int {
	if l == nil {
		return 0
	}
	return l.perShard * len(l.shards)
}

// PerSecond returns the limit, 0 for a nil (off) limiter.
func (l *Limiter) PerSecond() int {
	if l == nil {
		return 0
	}
	return l.rate
}
