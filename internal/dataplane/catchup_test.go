package dataplane

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// heldWatch is a backend whose Watch holds every change while hold is set, as a
// watcher goroutine that the runtime has not scheduled yet would; Since reads the
// feed at once, as the backends' do.
type heldWatch struct {
	store.Backend
	hold    atomic.Bool
	release chan struct{}
}

func (h *heldWatch) Watch(ctx context.Context, after uint64) <-chan store.Change {
	in := h.Backend.Watch(ctx, after)
	out := make(chan store.Change)
	go func() {
		defer close(out)
		for c := range in {
			if h.hold.Load() {
				select {
				case <-h.release:
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (h *heldWatch) Since(after uint64) (store.Change, bool) {
	return h.Backend.(interface {
		Since(uint64) (store.Change, bool)
	}).Since(after)
}

// TestCatchUpServesACommittedChangeAtOnce: a node mode change committed to the store
// is served as soon as CatchUp returns, in the committing goroutine, while the
// watch that Run follows has not delivered it yet; Run then finds it applied. A
// change committed without CatchUp waits for the watch (which shows the test can
// tell the two apart).
func TestCatchUpServesACommittedChangeAtOnce(t *testing.T) {
	h := &heldWatch{release: make(chan struct{})}
	db := teststore.Over(t, "127.0.187.0/24", func(b store.Backend) store.Backend { h.Backend = b; return h })
	e := newABEnv(t, db, "127.0.188.")
	p := e.plane
	setMode := func(m model.Mode) {
		t.Helper()
		if err := e.setMode(e.aID, m); err != nil {
			t.Fatal(err)
		}
	}

	h.hold.Store(true)
	setMode(model.ModeDrain)
	p.CatchUp()
	if m := e.served(e.aID); m != balance.ModeDrain {
		t.Fatalf("after the commit and CatchUp, node a is served in mode %v, want drain", m)
	}
	if seen := e.answers(4); seen["b"] != 4 {
		t.Fatalf("answers after CatchUp: %v, want b only", seen)
	}

	// Without CatchUp the change waits for the held watch.
	setMode(model.ModeAccept)
	time.Sleep(50 * time.Millisecond)
	if m := e.served(e.aID); m != balance.ModeDrain {
		t.Fatalf("a change applied without CatchUp while the watch was held (mode %v): the test cannot tell", m)
	}
	h.hold.Store(false)
	close(h.release)
	waitFor(t, 2*time.Second, "the watch to apply the accept", func() bool { return e.served(e.aID) == balance.ModeAccept })
	if rev, _ := db.Backend().Revision(); e.applied() != rev {
		t.Fatalf("the data plane reflects revision %d, the store is at %d", e.applied(), rev)
	}
}
