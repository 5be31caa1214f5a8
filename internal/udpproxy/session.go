package udpproxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/stats"
)

// session is one client address and port and the node socket serving it.
type session struct {
	client  clientAddr
	fd      int
	slot    uint32
	node    *balance.Node
	backend Backend
	ctr     *stats.Counters // the node's
	snap    *Snapshot       // the snapshot the node was last checked against
	start   time.Time

	// Written by the front loop only.
	lastIn       int64
	bytesIn, dIn uint64
	reason       string

	// Written by the node loop only, except lastOut and failed which the
	// front loop reads.
	lastOut        atomic.Int64
	failed         atomic.Bool // the node socket reported an error (ICMP unreachable)
	bytesOut, dOut uint64
}

// idle reports whether s has seen no datagram either way for timeout.
func (s *session) idle(now int64, timeout time.Duration) bool {
	last := max(s.lastIn, s.lastOut.Load())
	return now-last >= int64(timeout)
}

// slab maps the 32-bit tokens the epoll set carries to sessions. Reads are
// lock-free (atomic pointers in chunks that never move); allocating and
// freeing a slot take a mutex, once per session.
type slab struct {
	mu     sync.Mutex
	free   []uint32
	next   uint32
	chunks [slabChunks]atomic.Pointer[[slabChunk]atomic.Pointer[session]]
}

const (
	slabChunk  = 1024
	slabChunks = 4096 // 4M sessions per proxy, far past any fd limit
	// wakeToken is the epoll token of the node loop's eventfd.
	wakeToken = ^uint32(0)
)

// put stores s in a free slot and returns the slot, or false when full.
func (t *slab) put(s *session) (uint32, bool) {
	t.mu.Lock()
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		if t.next >= slabChunk*slabChunks {
			t.mu.Unlock()
			return 0, false
		}
		i = t.next
		t.next++
		if i%slabChunk == 0 && t.chunks[i/slabChunk].Load() == nil {
			t.chunks[i/slabChunk].Store(new([slabChunk]atomic.Pointer[session]))
		}
	}
	t.mu.Unlock()
	t.chunks[i/slabChunk].Load()[i%slabChunk].Store(s)
	s.slot = i
	return i, true
}

// get returns the session in slot i, or nil.
func (t *slab) get(i uint32) *session {
	c := t.chunks[i/slabChunk%slabChunks].Load()
	if c == nil {
		return nil
	}
	return c[i%slabChunk].Load()
}

// release frees slot i.
func (t *slab) release(i uint32) {
	t.chunks[i/slabChunk].Load()[i%slabChunk].Store(nil)
	t.mu.Lock()
	t.free = append(t.free, i)
	t.mu.Unlock()
}
