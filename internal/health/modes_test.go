package health

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// TestSetModesIsSetForModeChanges: SetModes does to the nodes it names what Set
// would (reject stops the checks and reports DOWN; back from reject, checks resume
// and the node comes UP with the same handle), and refuses, changing nothing, what
// only Set can do.
func TestSetModesIsSetForModeChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		nodes := nodesOf(10, 3)
		handles := h.c.Set(1, spec1s(3), nodes)
		h.run()
		h.rec.waitStatus(t, 10, model.StatusUp, time.Second)

		rejected := nodes[0]
		rejected.Mode = model.ModeReject
		if !h.c.SetModes(1, spec1s(3), []model.Node{rejected}) {
			t.Fatal("SetModes refused a mode change of a known node")
		}
		if got := h.c.Status(10); got != model.StatusDown {
			t.Fatalf("reject: status %s, want DOWN", got)
		}
		synctest.Wait()
		before := len(h.fake.checks(10))
		time.Sleep(5 * time.Second)
		if got := len(h.fake.checks(10)); got != before {
			t.Fatalf("%d checks of a reject node in 5 s", got-before)
		}
		if got := h.c.Set(1, spec1s(3), append([]model.Node{rejected}, nodes[1:]...))[0]; got != handles[0] || h.c.Status(10) != model.StatusDown {
			t.Fatal("Set after SetModes disagrees with it")
		}

		if !h.c.SetModes(1, spec1s(3), []model.Node{nodes[0]}) { // accept again
			t.Fatal("SetModes refused a mode change back to accept")
		}
		h.rec.waitStatus(t, 10, model.StatusUp, initialDelayMax(time.Second)+time.Second)
		if h.c.Lookup(10) != handles[0] {
			t.Fatal("a mode change replaced the handle")
		}

		// What only Set can do is refused, and changes nothing.
		moved := nodes[1]
		moved.Address, moved.Mode = "127.0.9.201:8080", model.ModeReject
		unknown := nodes[2]
		unknown.ID, unknown.Mode = 99, model.ModeReject
		reject2 := nodes[2]
		reject2.Mode = model.ModeReject
		for what, try := range map[string]func() bool{
			"a new address":     func() bool { return h.c.SetModes(1, spec1s(3), []model.Node{reject2, moved}) },
			"an unknown node":   func() bool { return h.c.SetModes(1, spec1s(3), []model.Node{reject2, unknown}) },
			"other settings":    func() bool { return h.c.SetModes(1, spec1s(4), []model.Node{reject2}) },
			"an unknown config": func() bool { return h.c.SetModes(2, spec1s(3), []model.Node{reject2}) },
		} {
			if try() {
				t.Errorf("SetModes took %s", what)
			}
			if h.c.Status(11) != model.StatusUp || h.c.Status(12) != model.StatusUp {
				t.Errorf("a refused SetModes (%s) changed a node", what)
			}
		}
		h.stop(t)
	})
}
