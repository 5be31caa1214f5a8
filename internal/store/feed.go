package store

import (
	"context"
	"sync"
)

// Ref names one stored object: its kind and its key.
type Ref struct {
	Kind Kind
	Key  string // the key's bytes
}

// Change is what a watcher learns: the revision the state has reached and every key
// of a state kind (see Kind.State) written or deleted since the revision the
// watcher had before. Keys of several revisions coalesce into one Change when the
// reader is slower than the writers; each key appears once. Reset means the feed
// can no longer say what changed since then (the reader fell further behind than
// the feed's log reaches, or an etcd compaction): the reader reads the whole state
// again, at Revision or later.
type Change struct {
	Revision uint64
	Reset    bool
	Keys     []Ref
}

// DefaultFeedLog bounds how many changed keys a Feed remembers for watchers that
// lag behind; a watcher further behind gets a Reset.
const DefaultFeedLog = 1 << 18

// Feed fans committed changes out to watchers. A Backend publishes each committed
// revision with its changed keys; Watch serves them. The bbolt backend publishes
// from its Update; the etcd backend publishes what its etcd watch reports, so
// that readers see the same feed whichever store runs.
type Feed struct {
	mu      sync.Mutex
	rev     uint64  // the latest published revision
	log     []entry // recent revisions, oldest first
	logKeys int     // keys held in log
	maxKeys int
	subs    map[chan struct{}]struct{}
}

type entry struct {
	prev, rev uint64 // the revision before this one was published, and this one's
	keys      []Ref
}

// NewFeed returns a feed whose state stands at revision rev, remembering up to
// maxKeys changed keys (DefaultFeedLog when ≤ 0).
func NewFeed(rev uint64, maxKeys int) *Feed {
	if maxKeys <= 0 {
		maxKeys = DefaultFeedLog
	}
	return &Feed{rev: rev, maxKeys: maxKeys, subs: map[chan struct{}]struct{}{}}
}

// Publish records that revision rev committed writes to keys, and wakes the
// watchers. Revisions must be published in increasing order; they need not be
// consecutive (etcd's advance with writes that are not state, such as tokens).
func (f *Feed) Publish(rev uint64, keys []Ref) {
	f.mu.Lock()
	f.log = append(f.log, entry{f.rev, rev, keys})
	f.rev = rev
	f.logKeys += len(keys)
	drop := 0
	for f.logKeys > f.maxKeys && drop < len(f.log)-1 {
		f.logKeys -= len(f.log[drop].keys)
		drop++
	}
	if drop > 0 {
		f.log = append(f.log[:0:0], f.log[drop:]...)
	}
	f.wake()
	f.mu.Unlock()
}

// Reset tells every watcher that the state must be read again at revision rev or
// later: the backend lost track of what changed (an etcd watch that fell behind a
// compaction).
func (f *Feed) Reset(rev uint64) {
	f.mu.Lock()
	f.rev, f.log, f.logKeys = rev, nil, 0
	f.wake()
	f.mu.Unlock()
}

// wake pokes every watcher; f.mu is held.
func (f *Feed) wake() {
	for ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default: // already woken
		}
	}
}

// Revision returns the latest published revision.
func (f *Feed) Revision() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rev
}

// Since returns the Change from revision after to the latest, and whether there is
// one: what Watch would send next, read at once in the caller's goroutine (see
// DB.Since).
func (f *Feed) Since(after uint64) (Change, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if after >= f.rev {
		return Change{}, false
	}
	c := Change{Revision: f.rev}
	if len(f.log) == 0 || f.log[0].prev > after {
		c.Reset = true
		return c, true
	}
	seen := map[Ref]struct{}{}
	for _, e := range f.log {
		if e.rev <= after {
			continue
		}
		for _, k := range e.keys {
			if _, dup := seen[k]; !dup {
				seen[k] = struct{}{}
				c.Keys = append(c.Keys, k)
			}
		}
	}
	return c, true
}

// Watch sends, until ctx ends, the Changes after revision after: first what the log
// holds since then (or a Reset), then each new revision, coalescing while the reader
// is busy. The channel closes when ctx ends.
func (f *Feed) Watch(ctx context.Context, after uint64) <-chan Change {
	out := make(chan Change)
	wake := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs[wake] = struct{}{}
	f.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.subs, wake)
			f.mu.Unlock()
		}()
		for {
			if c, ok := f.Since(after); ok {
				select {
				case out <- c:
					after = c.Revision
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
