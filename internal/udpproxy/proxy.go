package udpproxy

import (
	"encoding/binary"
	"errors"
	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/throttle"
)

// Backend is what the proxy needs of a node beyond its balance.Node: the data
// plane keeps one in each balance.Node.Data of a udp pool.
type Backend interface {
	// Counters are the node's traffic counters.
	Counters() *stats.Counters
	// PassiveFailure reports an ICMP port-unreachable (or other socket error)
	// on a session's node socket to the passive health checks.
	PassiveFailure()
	// PassiveSuccess reports a reply from the node.
	PassiveSuccess()
}

// Stickiness is how a udp config keeps clients on a node beyond one session.
type Stickiness uint8

// Stickiness kinds of udp configs.
const (
	// StickyNone: a session keeps its node while it lives; nothing is
	// remembered once it ends.
	StickyNone Stickiness = iota
	// StickySession: the client's address and port stay pinned to the node
	// after the session ends, for the sticky table's idle expiry.
	StickySession
	// StickySourceIP: the client's address is pinned to one node across all
	// its sessions, whatever their ports.
	StickySourceIP
)

// Snapshot is an immutable view of one udp config; a change makes a new one,
// swapped in with Proxy.SetSnapshot. Sessions keep the node they were given.
type Snapshot struct {
	NodeBalancerID, ConfigID int
	// Pool chooses nodes; each node's Data must implement Backend.
	Pool *balance.Pool
	// Stickiness, and the table holding its pins (nil for StickyNone).
	Stickiness Stickiness
	Sticky     *balance.StickyTable
	// Firewall is the NodeBalancer's Cloud Firewall check, asked before anything
	// else for each datagram that would open a session; nil filters nothing.
	Firewall *firewall.Guard
	// Limiter is client_udp_sess_throttle: new sessions per second per client
	// address; nil when off.
	Limiter *throttle.Limiter
	// NB and Config are the NodeBalancer's and the config's counters.
	NB, Config *stats.Counters
	// Timeout ends a session after this long without a datagram either way.
	Timeout time.Duration
}

// Entry describes one ended session for the access log.
type Entry = stats.UDPEntry

// Options configure a Proxy.
type Options struct {
	// Log receives errors of the proxy itself, never one line per datagram.
	Log *slog.Logger
	// Source, when valid, is the local address of node sockets.
	Source netip.Addr
	// Now is the monotonic clock, in nanoseconds, of the throttle and the
	// sticky tables.
	Now func() int64
	// Active and MaxSessions cap concurrent sessions (with the data plane's
	// other connections when Active is shared); a new session over the cap
	// is refused. Nil Active means no cap.
	Active      *atomic.Int64
	MaxSessions int64
	// AccessLog, when set, receives every ended session; it must not block.
	AccessLog func(nodeBalancerID, configID int, e Entry)
}

// Proxy is the running proxy of one udp config.
type Proxy struct {
	opts Options
	addr netip.AddrPort
	conn *net.UDPConn
	snap atomic.Pointer[Snapshot]

	front   frontLoop
	node    nodeLoop
	slots   slab
	closeMu sync.Mutex
	ended   []*session // ended by the front loop, for the node loop to close
	count   atomic.Int64

	wg       sync.WaitGroup
	stopping atomic.Bool
	once     sync.Once
}

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() netip.AddrPort { return p.addr }

// SetSnapshot makes s the snapshot new datagrams are handled with.
func (p *Proxy) SetSnapshot(s *Snapshot) { p.snap.Store(s) }

// Snapshot returns the current snapshot.
func (p *Proxy) Snapshot() *Snapshot { return p.snap.Load() }

// Sessions returns the number of open sessions.
func (p *Proxy) Sessions() int { return int(p.count.Load()) }

// Close stops the proxy: it closes the frontend socket, ends every session
// (each is logged) and returns once both loops are done. UDP has nothing to
// finish gracefully: a datagram in flight is lost either way.
func (p *Proxy) Close() {
	p.once.Do(func() {
		p.stopping.Store(true)
		p.conn.Close()
		p.node.wake()
		p.wg.Wait()
	})
}

// ErrClosed is returned by operations on a closed proxy.
var ErrClosed = errors.New("udp proxy closed")

// End reasons, for the access log.
const (
	EndIdle     = "idle"      // udp_session_timeout passed without traffic
	EndNodeDown = "node_down" // the node went DOWN, was rejected or removed
	EndICMP     = "unreachable"
	EndClosed   = "closed" // the config was removed or changed address
)

// sessionKey turns a client's address and port into the address the sticky
// table pins session stickiness under. For IPv4 clients it is exact (the
// port sits where no IPv4-mapped address has bits); for IPv6 clients it is a
// hash, and two sessions that collide merely share a pin.
func sessionKey(c netip.AddrPort) netip.Addr {
	b := c.Addr().As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	if c.Addr().Is4() || c.Addr().Is4In6() {
		hi = 1<<63 | uint64(c.Port())
	} else {
		hi = mix(hi ^ uint64(c.Port())<<48)
		lo = mix(lo ^ hi)
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// choose picks the node of a new session from client, honouring stickiness.
func choose(s *Snapshot, client netip.AddrPort, now int64) *balance.Node {
	key := balance.HashAddr(client.Addr())
	if s.Sticky == nil || s.Stickiness == StickyNone {
		return s.Pool.Pick(key)
	}
	pinKey := client.Addr()
	if s.Stickiness == StickySession {
		pinKey = sessionKey(client)
	}
	pinned, _ := s.Sticky.Get(pinKey, now)
	n, repin := s.Pool.Choose(key, pinned)
	if repin && n != nil {
		s.Sticky.Set(pinKey, n.ID, now)
	}
	return n
}
