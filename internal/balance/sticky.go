package balance

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of StickyTable.
const (
	// DefaultStickyTTL is how long a pin survives without use, as Linode's
	// table stickiness does (30 minutes).
	DefaultStickyTTL = 30 * time.Minute
	// DefaultStickyMaxEntries bounds the pins of one configuration.
	DefaultStickyMaxEntries = 1 << 16
	// DefaultStickyShards is the number of independently locked shards.
	DefaultStickyShards = 64
)

// evictSample is how many live entries an eviction compares to find the
// oldest when a full shard has nothing expired.
const evictSample = 16

// StickyOptions configures a StickyTable. Zero fields take the defaults.
type StickyOptions struct {
	// MaxEntries bounds the number of pins held (DefaultStickyMaxEntries).
	MaxEntries int
	// TTL is how long a pin lives after its last use (DefaultStickyTTL).
	TTL time.Duration
	// Shards is the number of shards, rounded up to a power of two and
	// lowered so that every shard may hold at least one entry
	// (DefaultStickyShards).
	Shards int
	// Seed mixes into the address hash that places entries, so that an
	// attacker cannot choose addresses that crowd one shard. Zero picks a
	// random seed; tests may fix one.
	Seed uint64
}

// StickyTable maps client addresses to the node ID they are pinned to, for
// table stickiness. A pin expires TTL after its last use (Get refreshes it),
// the table holds at most MaxEntries pins, and PurgeNode drops the pins of a
// node that went DOWN or was removed. One table lives as long as its
// configuration, across Pool snapshots, so re-weighting a node keeps its pins.
//
// Reads are lock-free and allocation-free: the table is split into shards,
// each an open-addressing hash table whose slots are atomic pointers to
// immutable entries (only the last-use time is an atomic that Get updates).
// Writes (Set, Delete, purges, eviction) take the shard's mutex, so writers
// for different shards do not contend and readers never wait. A reader racing
// with a write to the same address may miss the entry once; the caller then
// re-balances and re-pins, as for a new client.
//
// When a full shard needs room it first drops expired entries (a sweep that
// runs at most once per expiry of its oldest entry), then the least recently
// used of a sample of up to 16 entries: an approximation of evicting the
// oldest that stays O(1) under a flood of new addresses. Addresses are keyed
// by their 16-byte form: an IPv4 address and its IPv4-mapped IPv6 form are
// one client, and zones are ignored.
//
// Time is passed in as now, in nanoseconds on any clock that does not go back
// (e.g. time.Since of a fixed start), so tests control it.
type StickyTable struct {
	ttl      int64
	seed     uint64
	perShard int
	maxSlots int // slot array size limit per shard (power of two)
	shift    uint
	shards   []stickyShard
}

type stickyEntry struct {
	hi, lo uint64 // the address, immutable
	id     int    // the node, immutable
	last   atomic.Int64
}

// tombstone marks a deleted slot so that probes for later keys go on.
var tombstone = new(stickyEntry)

type slotArray struct {
	slots []atomic.Pointer[stickyEntry]
	mask  uint64
}

type stickyShard struct {
	slots atomic.Pointer[slotArray]

	mu        sync.Mutex
	live      int   // entries (not tombstones), including expired ones
	used      int   // entries + tombstones
	nextSweep int64 // no entry expires before this
	cursor    uint64
	_         [64]byte // keep shards on separate cache lines
}

// NewStickyTable returns an empty table.
func NewStickyTable(o StickyOptions) *StickyTable {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultStickyMaxEntries
	}
	if o.TTL <= 0 {
		o.TTL = DefaultStickyTTL
	}
	if o.Shards <= 0 {
		o.Shards = DefaultStickyShards
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64() | 1
	}
	shards := 1
	for shards < o.Shards && shards*2 <= o.MaxEntries {
		shards *= 2
	}
	t := &StickyTable{
		ttl:      int64(o.TTL),
		seed:     o.Seed,
		perShard: o.MaxEntries / shards,
		shift:    uint(64 - bits.TrailingZeros(uint(shards))),
		shards:   make([]stickyShard, shards),
	}
	t.maxSlots = 8
	for t.maxSlots < 2*t.perShard {
		t.maxSlots *= 2
	}
	for i := range t.shards {
		t.shards[i].slots.Store(newSlotArray(min(8, t.maxSlots)))
	}
	return t
}

func newSlotArray(n int) *slotArray {
	return &slotArray{slots: make([]atomic.Pointer[stickyEntry], n), mask: uint64(n - 1)}
}

func (t *StickyTable) locate(a netip.Addr) (hi, lo, h uint64, sh *stickyShard) {
	hi, lo = addrWords(a)
	h = hashWords(hi, lo, t.seed)
	return hi, lo, h, &t.shards[h>>t.shift]
}

// Get returns the node ID that a is pinned to, if its pin has not expired, and
// marks the pin used at now. It never locks and never allocates.
func (t *StickyTable) Get(a netip.Addr, now int64) (id int, ok bool) {
	hi, lo, h, sh := t.locate(a)
	arr := sh.slots.Load()
	for i, n := h&arr.mask, uint64(0); n <= arr.mask; i, n = (i+1)&arr.mask, n+1 {
		e := arr.slots[i].Load()
		if e == nil {
			break
		}
		if e.hi == hi && e.lo == lo && e != tombstone {
			last := e.last.Load()
			if now-last >= t.ttl {
				return 0, false
			}
			e.touch(now)
			return e.id, true
		}
	}
	return 0, false
}

// Set pins a to node id as of now, replacing any earlier pin of a. When the
// table is full it makes room as the type documentation describes.
func (t *StickyTable) Set(a netip.Addr, id int, now int64) {
	hi, lo, h, sh := t.locate(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	arr := sh.slots.Load()
	if at, _ := sh.find(arr, hi, lo, h); at >= 0 {
		e := arr.slots[at].Load()
		if e.id == id && now-e.last.Load() < t.ttl {
			e.touch(now)
			return
		}
		arr.slots[at].Store(newEntry(hi, lo, id, now))
		return
	}
	if sh.live >= t.perShard {
		t.makeRoom(sh, now)
	}
	if (sh.used+1)*4 > len(arr.slots)*3 {
		t.rehash(sh, now)
	}
	// Making room may have freed a slot earlier on the probe path.
	arr = sh.slots.Load()
	_, free := sh.find(arr, hi, lo, h)
	if arr.slots[free].Load() == nil {
		sh.used++
	}
	sh.live++
	arr.slots[free].Store(newEntry(hi, lo, id, now))
}

// touch moves the entry's last use forward to now; it never moves it back,
// which lets a sweep know that nothing expires before the time it computed.
func (e *stickyEntry) touch(now int64) {
	for {
		last := e.last.Load()
		if now <= last || e.last.CompareAndSwap(last, now) {
			return
		}
	}
}

func newEntry(hi, lo uint64, id int, now int64) *stickyEntry {
	e := &stickyEntry{hi: hi, lo: lo, id: id}
	e.last.Store(now)
	return e
}

// find returns the slot holding the address (or -1) and the first slot on its
// probe path where it could be inserted: a tombstone or the empty slot that
// ends the path (or -1 if the array has neither, which rehashing prevents).
func (sh *stickyShard) find(arr *slotArray, hi, lo, h uint64) (at, free int) {
	at, free = -1, -1
	for i, n := h&arr.mask, uint64(0); n <= arr.mask; i, n = (i+1)&arr.mask, n+1 {
		e := arr.slots[i].Load()
		if e == nil {
			if free < 0 {
				free = int(i)
			}
			return at, free
		}
		if e == tombstone {
			if free < 0 {
				free = int(i)
			}
			continue
		}
		if e.hi == hi && e.lo == lo {
			return int(i), free
		}
	}
	return at, free
}

// makeRoom frees at least one entry of a full shard: the expired ones if any
// may have expired, else the least recently used of a sample.
func (t *StickyTable) makeRoom(sh *stickyShard, now int64) {
	if now >= sh.nextSweep {
		t.sweepShard(sh, now)
	}
	if sh.live < t.perShard {
		return
	}
	arr := sh.slots.Load()
	n := uint64(len(arr.slots))
	victim, seen := -1, 0
	var oldest int64
	i := sh.cursor & arr.mask
	for range n {
		if e := arr.slots[i].Load(); e != nil && e != tombstone {
			if last := e.last.Load(); victim < 0 || last < oldest {
				victim, oldest = int(i), last
			}
			if seen++; seen == evictSample {
				break
			}
		}
		i = (i + 1) & arr.mask
	}
	sh.cursor = i + 1
	if victim >= 0 {
		arr.slots[victim].Store(tombstone)
		sh.live--
	}
}

// sweepShard tombstones the shard's expired entries and records when the next
// one can expire.
func (t *StickyTable) sweepShard(sh *stickyShard, now int64) (removed int) {
	arr := sh.slots.Load()
	next := now + t.ttl
	for i := range arr.slots {
		e := arr.slots[i].Load()
		if e == nil || e == tombstone {
			continue
		}
		if last := e.last.Load(); now-last >= t.ttl {
			arr.slots[i].Store(tombstone)
			sh.live--
			removed++
		} else if last+t.ttl < next {
			next = last + t.ttl
		}
	}
	sh.nextSweep = next
	return removed
}

// rehash copies the shard's live, unexpired entries into a fresh slot array,
// dropping tombstones, sized for the entries plus one (doubling as the shard
// grows, up to its limit), and publishes it. Readers still probing the old
// array see a consistent, if momentarily stale, table.
func (t *StickyTable) rehash(sh *stickyShard, now int64) {
	old := sh.slots.Load()
	size := 8
	for size < 2*(sh.live+1) && size < t.maxSlots {
		size *= 2
	}
	arr := newSlotArray(size)
	live := 0
	next := now + t.ttl
	for i := range old.slots {
		e := old.slots[i].Load()
		if e == nil || e == tombstone {
			continue
		}
		last := e.last.Load()
		if now-last >= t.ttl {
			continue
		}
		next = min(next, last+t.ttl)
		j := hashWords(e.hi, e.lo, t.seed) & arr.mask
		for arr.slots[j].Load() != nil {
			j = (j + 1) & arr.mask
		}
		arr.slots[j].Store(e)
		live++
	}
	sh.live, sh.used, sh.nextSweep = live, live, next
	sh.slots.Store(arr)
}

// Delete removes the pin of a, if any.
func (t *StickyTable) Delete(a netip.Addr) {
	hi, lo, h, sh := t.locate(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	arr := sh.slots.Load()
	if at, _ := sh.find(arr, hi, lo, h); at >= 0 {
		arr.slots[at].Store(tombstone)
		sh.live--
	}
}

// PurgeNode removes every pin to node id, as when the node goes DOWN or leaves
// the configuration, and returns how many it removed. It scans the whole
// table, one shard lock at a time.
func (t *StickyTable) PurgeNode(id int) int {
	return t.PurgeFunc(func(x int) bool { return x == id })
}

// PurgeFunc removes every pin whose node ID drop reports true for (e.g. IDs
// that a new Pool no longer has) and returns how many it removed.
func (t *StickyTable) PurgeFunc(drop func(id int) bool) int {
	removed := 0
	for s := range t.shards {
		sh := &t.shards[s]
		sh.mu.Lock()
		arr := sh.slots.Load()
		for i := range arr.slots {
			if e := arr.slots[i].Load(); e != nil && e != tombstone && drop(e.id) {
				arr.slots[i].Store(tombstone)
				sh.live--
				removed++
			}
		}
		sh.mu.Unlock()
	}
	return removed
}

// Sweep removes every pin expired at now and returns how many it removed.
// Expired pins are already invisible to Get and make room when the table is
// full; Sweep, run from a timer, returns their memory sooner.
func (t *StickyTable) Sweep(now int64) int {
	removed := 0
	for s := range t.shards {
		sh := &t.shards[s]
		sh.mu.Lock()
		removed += t.sweepShard(sh, now)
		sh.mu.Unlock()
	}
	return removed
}

// Len returns the number of pins held, counting expired ones not yet swept.
func (t *StickyTable) Len() int {
	n := 0
	for s := range t.shards {
		sh := &t.shards[s]
		sh.mu.Lock()
		n += sh.live
		sh.mu.Unlock()
	}
	return n
}

// Cap returns the most pins the table holds: MaxEntries rounded down to a
// multiple of the number of shards.
func (t *StickyTable) Cap() int { return t.perShard * len(t.shards) }
