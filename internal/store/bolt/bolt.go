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

// quietKinds are kinds whose writes are not desired state and do not wake watchers.
var quietKinds = map[store.Kind]bool{store.KindBlob: true, store.KindToken: true, store.KindReservedIP: true}

// Backend is a store.Backend on a bbolt file.
type Backend struct {
	db *bbolt.DB

	mu       sync.Mutex
	watchers map[chan uint64]struct{}
}

// Open opens (creating if needed) the store file in dir.
func Open(dir string) (*Backend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "nodebalancer.db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
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
	return &Backend{db: db, watchers: map[chan uint64]struct{}{}}, nil
}

type tx struct {
	t       *bbolt.Tx
	changed bool
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
	t.changed = t.changed || !quietKinds[k]
	return b.Put(key, value)
}

func (t *tx) Delete(k store.Kind, key []byte) error {
	b, err := t.bucket(k)
	if err != nil {
		return err
	}
	t.changed = t.changed || !quietKinds[k]
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

// View implements store.Backend.
func (b *Backend) View(fn func(store.Tx) error) error {
	return b.db.View(func(t *bbolt.Tx) error { return fn(&tx{t: t}) })
}

// Update implements store.Backend.
func (b *Backend) Update(fn func(store.Tx) error) error {
	var rev uint64
	changed := false
	err := b.db.Update(func(t *bbolt.Tx) error {
		x := &tx{t: t}
		if err := fn(x); err != nil {
			return err
		}
		if !x.changed {
			return nil
		}
		m := t.Bucket(metaBucket)
		rev = readRev(m) + 1
		changed = true
		return m.Put(revisionKey, binary.BigEndian.AppendUint64(nil, rev))
	})
	if err == nil && changed {
		b.notify(rev)
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

func (b *Backend) notify(rev uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.watchers {
		select {
		case <-ch: // drop the stale revision: readers want the latest only
		default:
		}
		ch <- rev
	}
}

// Watch implements store.Backend. The channel closes when ctx ends.
func (b *Backend) Watch(ctx context.Context) <-chan uint64 {
	ch := make(chan uint64, 1)
	b.mu.Lock()
	b.watchers[ch] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.watchers, ch)
		close(ch)
		b.mu.Unlock()
	}()
	return ch
}

// Close implements store.Backend.
func (b *Backend) Close() error { return b.db.Close() }
