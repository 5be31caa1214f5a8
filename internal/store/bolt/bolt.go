// Package bolt is the embedded store.Backend: one bbolt file under the data directory,
// no server to run. bbolt locks the file, so one process owns it.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/nodebalancer/nodebalancer/internal/store"
)

var (
	metaBucket  = []byte("meta")
	revisionKey = []byte("revision")
)

// Backend is a store.Backend on a bbolt file.
type Backend struct {
	db *bbolt.DB

	// mu orders publishing: bbolt serialises Update transactions, and the feed
	// must see their revisions in commit order.
	mu    sync.Mutex
	feed  *store.Feed
	stage store.StageFunc // see SetStage; read and written under mu
}

// Open opens (creating if needed) the store file in dir.
func Open(dir string) (*Backend, error) {
	return open(dir, bbolt.Options{})
}

// open is Open with bbolt options (tests bound the file's size to fail a commit).
func open(dir string, o bbolt.Options) (*Backend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "nodebalancer.db")
	o.Timeout = 2 * time.Second
	db, err := bbolt.Open(path, 0o600, &o)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, k := range append([]store.Kind{}, store.Kinds...) {
			if _, err := tx.CreateBucketIfNotExists([]byte(k)); err != nil {
				return err
			}
		}
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise store %s: %w", path, err)
	}
	b := &Backend{db: db}
	rev, err := b.Revision()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read revision of %s: %w", path, err)
	}
	b.feed = store.NewFeed(rev, 0)
	return b, nil
}

type tx struct {
	t *bbolt.Tx
	// changed lists the state keys written or deleted, for the change feed.
	changed []store.Ref
}

// record notes a write to key of kind k for the feed.
func (t *tx) record(k store.Kind, key []byte) {
	if k.State() {
		t.changed = append(t.changed, store.Ref{Kind: k, Key: string(key)})
	}
}

func (t *tx) bucket(k store.Kind) (*bbolt.Bucket, error) {
	b := t.t.Bucket([]byte(k))
	if b == nil {
		return nil, fmt.Errorf("store has no collection %q", k)
	}
	return b, nil
}

func (t *tx) Get(k store.Kind, key []byte) ([]byte, error) {
	b, err := t.bucket(k)
	if err != nil {
		return nil, err
	}
	return b.Get(key), nil
}

func (t *tx) Put(k store.Kind, key, value []byte) error {
	b, err := t.bucket(k)
	if err != nil {
		return err
	}
	t.record(k, key)
	return b.Put(key, value)
}

func (t *tx) Delete(k store.Kind, key []byte) error {
	b, err := t.bucket(k)
	if err != nil {
		return err
	}
	t.record(k, key)
	return b.Delete(key)
}

func (t *tx) Scan(k store.Kind, prefix []byte, fn func(key, value []byte) error) error {
	b, err := t.bucket(k)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for key, v := c.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, v = c.Next() {
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) NextID(k store.Kind) (int, error) {
	b, err := t.bucket(k)
	if err != nil {
		return 0, err
	}
	id, err := b.NextSequence()
	return int(id), err
}

func (t *tx) Revision() (uint64, error) { return readRev(t.t.Bucket(metaBucket)), nil }

// View implements store.Backend.
func (b *Backend) View(fn func(store.Tx) error) error {
	return b.db.View(func(t *bbolt.Tx) error { return fn(&tx{t: t}) })
}

// SetStage has fn shown every write of state before its commit (see
// store.StageFunc): the data plane takes a change while bbolt still writes it to
// disk, and is told if the commit failed.
func (b *Backend) SetStage(fn store.StageFunc) {
	b.mu.Lock()
	b.stage = fn
	b.mu.Unlock()
}

// Update implements store.Backend. A transaction that wrote state keys advances
// the revision, is shown to the stage function, if any, before its commit, and
// publishes the keys to the feed once committed.
func (b *Backend) Update(fn func(store.Tx) error) error {
	var rev uint64
	var changed []store.Ref
	var done func(bool)
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.db.Update(func(t *bbolt.Tx) error {
		x := &tx{t: t}
		if err := fn(x); err != nil {
			return err
		}
		if len(x.changed) == 0 {
			return nil
		}
		m := t.Bucket(metaBucket)
		rev = readRev(m) + 1
		changed = x.changed
		if err := m.Put(revisionKey, binary.BigEndian.AppendUint64(nil, rev)); err != nil {
			return err
		}
		if b.stage != nil {
			done = b.stage(x, store.Change{Revision: rev, Keys: changed})
		}
		return nil
	})
	if err == nil && changed != nil {
		b.feed.Publish(rev, changed)
	}
	if done != nil {
		done(err == nil)
	}
	return err
}

func readRev(m *bbolt.Bucket) uint64 {
	v := m.Get(revisionKey)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Revision implements store.Backend.
func (b *Backend) Revision() (rev uint64, err error) {
	err = b.db.View(func(t *bbolt.Tx) error {
		rev = readRev(t.Bucket(metaBucket))
		return nil
	})
	return rev, err
}

// Since returns what the feed holds after revision after (store.DB.Since).
func (b *Backend) Since(after uint64) (store.Change, bool) { return b.feed.Since(after) }

// Watch implements store.Backend. The channel closes when ctx ends.
func (b *Backend) Watch(ctx context.Context, after uint64) <-chan store.Change {
	return b.feed.Watch(ctx, after)
}

// Close implements store.Backend.
func (b *Backend) Close() error { return b.db.Close() }
