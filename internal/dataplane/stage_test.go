package dataplane

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// abEnv is a NodeBalancer with one http config of two nodes, a and b, each
// answering its name, and what a test needs to change them and look at them.
type abEnv struct {
	*env
	nbID, cid, aID, bID int
	url                 string
	client              *http.Client
}

func newABEnv(t *testing.T, db *store.DB, pool string) *abEnv {
	t.Helper()
	e := envOver(t, db)
	nameServer(t, pool+"2:9001", "a")
	nameServer(t, pool+"3:9001", "b")
	nb := e.create(config(model.ProtocolHTTP, 80, node("node-a", pool+"2:9001", 50), node("node-b", pool+"3:9001", 50)))
	cfgs, err := db.Configs(nb.ID)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := db.Nodes(nb.ID, cfgs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	return &abEnv{env: e, nbID: nb.ID, cid: cfgs[0].ID, aID: nodes[0].ID, bID: nodes[1].ID,
		url: "http://" + nb.IPv4 + ":80/", client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
}

// served is node id's mode in the pool the data plane serves.
func (s *abEnv) served(id int) balance.Mode {
	s.plane.mu.Lock()
	defer s.plane.mu.Unlock()
	return s.plane.listeners[s.cid].snap.Load().pool.Lookup(id).Mode
}

// stored is node id's mode in the committed store.
func (s *abEnv) stored(id int) model.Mode {
	s.t.Helper()
	n, err := s.db.Node(s.nbID, s.cid, id)
	if err != nil {
		s.t.Fatal(err)
	}
	return n.Mode
}

func (s *abEnv) setMode(id int, m model.Mode) error {
	_, err := s.db.UpdateNode(s.nbID, s.cid, id, func(n *model.Node) error { n.Mode = m; return nil })
	return err
}

// answers counts which node answered n new connections.
func (s *abEnv) answers(n int) map[string]int {
	s.t.Helper()
	seen := map[string]int{}
	for range n {
		who, _ := get(s.t, s.client, s.url)
		seen[who]++
	}
	return seen
}

// applied is the revision the data plane says it serves.
func (s *abEnv) applied() uint64 {
	s.plane.follow.mu.Lock()
	defer s.plane.follow.mu.Unlock()
	return s.plane.follow.applied
}

// stale reports whether the data plane waits for a full read of the state.
func (s *abEnv) stale() bool {
	s.plane.follow.mu.Lock()
	defer s.plane.follow.mu.Unlock()
	return s.plane.follow.stale
}

// TestStageServesAWriteBeforeItsCommit: with the embedded store's stage set to the
// data plane (as the server sets it), a node drained through the store is served
// drained while the write is still uncommitted — the store, read outside the
// write, still says accept. A write committed earlier that the data plane had not
// applied yet (its watch held, no CatchUp) is applied with it, and the data plane
// is at the store's revision once it commits, with no CatchUp and the watch still
// held.
func TestStageServesAWriteBeforeItsCommit(t *testing.T) {
	h := &heldWatch{release: make(chan struct{})}
	db := teststore.Over(t, "127.0.192.0/24", func(b store.Backend) store.Backend { h.Backend = b; return h })
	s := newABEnv(t, db, "127.0.193.")
	h.hold.Store(true)
	defer close(h.release)
	if err := s.setMode(s.bID, model.ModeBackup); err != nil { // committed, not applied
		t.Fatal(err)
	}
	if m := s.served(s.bID); m != balance.ModeAccept {
		t.Fatalf("node b's backup was served (%v) with the watch held: the test cannot tell", m)
	}
	var atStage [2]balance.Mode
	var storedAtStage model.Mode
	h.Backend.(*bolt.Backend).SetStage(func(tx store.Tx, c store.Change) func(bool) {
		done := s.plane.Stage(tx, c)
		atStage = [2]balance.Mode{s.served(s.aID), s.served(s.bID)}
		storedAtStage = s.stored(s.aID)
		return done
	})
	if err := s.setMode(s.aID, model.ModeDrain); err != nil {
		t.Fatal(err)
	}
	if atStage != [2]balance.Mode{balance.ModeDrain, balance.ModeBackup} || storedAtStage != model.ModeAccept {
		t.Fatalf("before the commit nodes a and b were served %v with a %q stored, want drain and backup served and accept stored",
			atStage, storedAtStage)
	}
	rev, _ := db.Backend().Revision()
	if applied, stale := s.applied(), s.stale(); applied != rev || stale {
		t.Fatalf("after the commit the data plane is at revision %d (stale %v), the store at %d", applied, stale, rev)
	}
	if seen := s.answers(4); seen["b"] != 4 {
		t.Fatalf("answers after the drain: %v, want b (the backup, a drained) only", seen)
	}
}

// failingCommit is a backend whose writes, while fail is set, fail as a commit
// does after they were shown to the stage function: the write is discarded, and
// the stage told. Other writes go to the backend under it, unstaged.
type failingCommit struct {
	store.Backend
	fail  atomic.Bool
	stage atomic.Pointer[store.StageFunc]
}

var errCommit = errors.New("commit failed: disk full")

func (f *failingCommit) SetStage(fn store.StageFunc) { f.stage.Store(&fn) }

func (f *failingCommit) Since(after uint64) (store.Change, bool) {
	return f.Backend.(interface {
		Since(uint64) (store.Change, bool)
	}).Since(after)
}

func (f *failingCommit) Update(fn func(store.Tx) error) error {
	stage := f.stage.Load()
	if !f.fail.Load() || stage == nil || *stage == nil {
		return f.Backend.Update(fn)
	}
	var done func(bool)
	err := f.Backend.Update(func(tx store.Tx) error {
		rt := &recordingTx{Tx: tx}
		if err := fn(rt); err != nil {
			return err
		}
		rev, err := tx.Revision()
		if err != nil {
			return err
		}
		done = (*stage)(rt, store.Change{Revision: rev + 1, Keys: rt.keys})
		return errCommit // bbolt discards the write
	})
	if done != nil {
		done(false)
	}
	return err
}

// recordingTx notes the state keys a write puts or deletes.
type recordingTx struct {
	store.Tx
	keys []store.Ref
}

func (r *recordingTx) Put(k store.Kind, key, v []byte) error {
	if k.State() {
		r.keys = append(r.keys, store.Ref{Kind: k, Key: string(key)})
	}
	return r.Tx.Put(k, key, v)
}

func (r *recordingTx) Delete(k store.Kind, key []byte) error {
	if k.State() {
		r.keys = append(r.keys, store.Ref{Kind: k, Key: string(key)})
	}
	return r.Tx.Delete(k, key)
}

// TestStageUndoesAWriteWhoseCommitFails: a drain served before its commit is
// taken back when the commit fails: the data plane reads the committed state again
// and serves node a in accept, at the store's revision, and the next write that
// commits (the same revision number) is not mistaken for one already applied.
func TestStageUndoesAWriteWhoseCommitFails(t *testing.T) {
	fc := &failingCommit{}
	db := teststore.Over(t, "127.0.194.0/24", func(b store.Backend) store.Backend { fc.Backend = b; return fc })
	s := newABEnv(t, db, "127.0.195.")
	var atStage balance.Mode
	fc.SetStage(func(tx store.Tx, c store.Change) func(bool) {
		done := s.plane.Stage(tx, c)
		atStage = s.served(s.aID)
		return done
	})
	fc.fail.Store(true)
	rev, _ := db.Backend().Revision()
	if err := s.setMode(s.aID, model.ModeDrain); !errors.Is(err, errCommit) {
		t.Fatalf("UpdateNode = %v, want the failed commit", err)
	}
	if atStage != balance.ModeDrain {
		t.Fatalf("the staged drain was served as %v: the test cannot tell an undo", atStage)
	}
	if m := s.served(s.aID); m != balance.ModeAccept || s.stored(s.aID) != model.ModeAccept {
		t.Fatalf("after the failed commit node a is served %v, stored %q, want accept", m, s.stored(s.aID))
	}
	if applied, stale := s.applied(), s.stale(); applied != rev || stale {
		t.Fatalf("after the failed commit the data plane is at revision %d (stale %v), the store at %d", applied, stale, rev)
	}
	if seen := s.answers(6); seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("answers after the failed drain: %v, want both nodes", seen)
	}

	// The next write that commits takes the revision the failed one was to have.
	fc.fail.Store(false)
	if err := s.setMode(s.aID, model.ModeDrain); err != nil {
		t.Fatal(err)
	}
	s.plane.CatchUp()
	if m := s.served(s.aID); m != balance.ModeDrain {
		t.Fatalf("a committed drain at the revision of the failed one is served as %v", m)
	}
}

// stagedHeld is a heldWatch that passes SetStage on to the bbolt backend under it.
type stagedHeld struct{ *heldWatch }

func (s stagedHeld) SetStage(fn store.StageFunc) { s.Backend.(*bolt.Backend).SetStage(fn) }

// TestRunStagesTheEmbeddedStoresWrites: Run sets Stage on a store that offers it,
// so a drain is served when the write returns, with the watch held and no CatchUp.
func TestRunStagesTheEmbeddedStoresWrites(t *testing.T) {
	h := &heldWatch{release: make(chan struct{})}
	db := teststore.Over(t, "127.0.196.0/24", func(b store.Backend) store.Backend { h.Backend = b; return stagedHeld{h} })
	s := newABEnv(t, db, "127.0.197.")
	h.hold.Store(true)
	defer close(h.release)
	if err := s.setMode(s.aID, model.ModeDrain); err != nil {
		t.Fatal(err)
	}
	if m := s.served(s.aID); m != balance.ModeDrain {
		t.Fatalf("node a is served %v when the drain's write returns, want drain", m)
	}
}

// TestStagedWritesFromManyWriters: writers changing both nodes at once, each calling
// CatchUp after its write as the API does, leave the data plane serving exactly what
// the store holds, at its revision: staged writes, the feed and CatchUp agree.
func TestStagedWritesFromManyWriters(t *testing.T) {
	db := teststore.Open(t, t.TempDir(), "127.0.198.0/24")
	s := newABEnv(t, db, "127.0.199.")
	modes := []model.Mode{model.ModeAccept, model.ModeDrain, model.ModeBackup, model.ModeAccept}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				id := s.aID
				if (w+i)%2 == 1 {
					id = s.bID
				}
				if err := s.setMode(id, modes[(w+i)%len(modes)]); err != nil {
					errs <- err
					return
				}
				s.plane.CatchUp()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rev, _ := db.Backend().Revision()
	if applied, stale := s.applied(), s.stale(); applied != rev || stale {
		t.Fatalf("the data plane is at revision %d (stale %v), the store at %d", applied, stale, rev)
	}
	for _, id := range []int{s.aID, s.bID} {
		if got, want := s.served(id), s.stored(id); got.String() != string(want) {
			t.Fatalf("node %d is served %v, stored %q", id, got, want)
		}
	}
}
