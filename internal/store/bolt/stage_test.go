package bolt

import (
	"bytes"
	"errors"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/nodebalancer/nodebalancer/internal/store"
)

// staged records what a stage function was shown.
type staged struct {
	calls    int
	rev      uint64
	keys     []store.Ref
	inTx     []byte // the key's value read through the staged transaction
	outside  []byte // and read by another reader at the same moment
	done     []bool
	revAtEnd uint64 // the committed revision when done was called
}

func stageInto(t *testing.T, b *Backend, s *staged, kind store.Kind, key []byte) {
	b.SetStage(func(tx store.Tx, c store.Change) func(bool) {
		s.calls++
		s.rev, s.keys = c.Revision, c.Keys
		v, err := tx.Get(kind, key)
		if err != nil {
			t.Error(err)
		}
		s.inTx = bytes.Clone(v)
		if err := b.View(func(r store.Tx) error {
			v, err := r.Get(kind, key)
			s.outside = bytes.Clone(v)
			return err
		}); err != nil {
			t.Error(err)
		}
		return func(ok bool) {
			s.done = append(s.done, ok)
			s.revAtEnd, _ = b.Revision()
		}
	})
}

// TestStageSeesAWriteBeforeItCommits: the stage function is shown a write of state
// inside its transaction — the new value readable there and not yet outside it, the
// revision it will commit as — and told afterwards that it committed. Writes that
// fail, and writes of no state, are not shown.
func TestStageSeesAWriteBeforeItCommits(t *testing.T) {
	b, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key := store.Key(1, 2)
	var s staged
	stageInto(t, b, &s, store.KindNode, key)

	if err := b.Update(func(tx store.Tx) error { return tx.Put(store.KindNode, key, []byte("v1")) }); err != nil {
		t.Fatal(err)
	}
	rev, _ := b.Revision()
	if s.calls != 1 || s.rev != rev || len(s.keys) != 1 || s.keys[0] != (store.Ref{Kind: store.KindNode, Key: string(key)}) {
		t.Fatalf("shown %d writes, revision %d (store at %d), keys %v", s.calls, s.rev, rev, s.keys)
	}
	if string(s.inTx) != "v1" || s.outside != nil {
		t.Fatalf("while staged, the write read %q inside and %q outside, want v1 and nothing", s.inTx, s.outside)
	}
	if len(s.done) != 1 || !s.done[0] || s.revAtEnd != rev {
		t.Fatalf("done calls %v at revision %d, want [true] at %d", s.done, s.revAtEnd, rev)
	}

	boom := errors.New("boom")
	if err := b.Update(func(tx store.Tx) error {
		if err := tx.Put(store.KindNode, key, []byte("v2")); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if err := b.Update(func(tx store.Tx) error { return tx.Put(store.KindBlob, []byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	if s.calls != 1 {
		t.Fatalf("a failed write or a write of no state was shown (%d calls)", s.calls)
	}
}

// TestStageIsToldOfAFailedCommit: a write whose commit fails after it was staged
// (here the file may not grow past bbolt's MaxSize) is reported with done(false),
// and the store keeps the value it had.
func TestStageIsToldOfAFailedCommit(t *testing.T) {
	b, err := open(t.TempDir(), bbolt.Options{MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key := store.Key(1, 2)
	if err := b.Update(func(tx store.Tx) error { return tx.Put(store.KindNode, key, []byte("v1")) }); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Revision()
	var s staged
	stageInto(t, b, &s, store.KindNode, key)
	err = b.Update(func(tx store.Tx) error {
		if err := tx.Put(store.KindNode, key, []byte("v2")); err != nil {
			return err
		}
		return tx.Put(store.KindBlob, []byte("big"), make([]byte, 2<<20))
	})
	if err == nil {
		t.Fatal("a write past MaxSize committed: the test cannot fail a commit")
	}
	if s.calls != 1 || string(s.inTx) != "v2" || len(s.done) != 1 || s.done[0] {
		t.Fatalf("staged %d times (read %q), done %v, want once (v2), [false]", s.calls, s.inTx, s.done)
	}
	if rev, _ := b.Revision(); rev != before || s.revAtEnd != before {
		t.Fatalf("revision %d after the failed commit (%d when told), want %d", rev, s.revAtEnd, before)
	}
	var v []byte
	b.View(func(tx store.Tx) error { v, _ = tx.Get(store.KindNode, key); v = bytes.Clone(v); return nil })
	if string(v) != "v1" {
		t.Fatalf("after the failed commit the store holds %q, want v1", v)
	}
	if _, ok := b.Since(before); ok {
		t.Fatal("a failed commit was published to the feed")
	}
}
