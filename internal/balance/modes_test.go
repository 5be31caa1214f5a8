package balance

import "testing"

// forEachAlgorithm runs f as a subtest for every algorithm.
func forEachAlgorithm(t *testing.T, f func(t *testing.T, algo Algorithm)) {
	for _, algo := range algorithms {
		t.Run(algo.String(), func(t *testing.T) { f(t, algo) })
	}
}

func TestRejectNodeIsNeverPickedNorHonoured(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo,
			spec{id: 1, weight: 255, mode: ModeReject, status: StatusUp},
			spec{id: 2, weight: 1, status: StatusUp})
		if c := count(p, 1000); c[1] != 0 || c[2] != 1000 {
			t.Errorf("picks %v, want all on node 2", c)
		}
		if p.Honour(p.Lookup(1)) {
			t.Error("pin to a reject node honoured")
		}
		if n, repin := p.Choose(1, 1); n.ID != 2 || !repin {
			t.Errorf("Choose pinned to reject node = %d, repin %v; want node 2, repin", n.ID, repin)
		}
	})
}

func TestRejectOnlyPoolPicksNothing(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo, spec{id: 1, mode: ModeReject}, spec{id: 2, mode: ModeDrain})
		if p.Available() || p.Pick(5) != nil {
			t.Error("a pool of reject and drain nodes picked a node for a new client")
		}
	})
}

func TestDrainOnlyAcceptsStickyClients(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo,
			spec{id: 1, weight: 255, mode: ModeDrain},
			spec{id: 2, weight: 1})
		if c := count(p, 1000); c[1] != 0 {
			t.Errorf("drain node got %d new clients", c[1])
		}
		n, repin := p.Choose(7, 1)
		if n.ID != 1 || repin {
			t.Errorf("client pinned to drain node got node %d (repin %v), want node 1 kept", n.ID, repin)
		}
		p.Lookup(1).State.SetStatus(StatusDown)
		if n, repin := p.Choose(7, 1); n.ID != 2 || !repin {
			t.Errorf("client pinned to a DOWN drain node got node %d (repin %v), want node 2 and repin", n.ID, repin)
		}
	})
}

func TestBackupServesOnlyWhileNoAcceptNodeIsEligible(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo,
			spec{id: 1, weight: 1},
			spec{id: 2, weight: 1, mode: ModeDrain},
			spec{id: 3, weight: 255, mode: ModeBackup},
			spec{id: 4, weight: 255, mode: ModeBackup})
		if c := count(p, 500); c[1] != 500 || p.BackupsInUse() {
			t.Fatalf("with the accept node eligible picks %v, want all on node 1", c)
		}
		if p.Honour(p.Lookup(3)) {
			t.Error("pin to a backup node honoured while backups are not in use")
		}

		p.Lookup(1).State.SetStatus(StatusDown)
		p.Refresh()
		c := count(p, 500)
		if c[3]+c[4] != 500 || c[3] == 0 || c[4] == 0 || !p.BackupsInUse() {
			t.Fatalf("with the accept node DOWN picks %v, want shared by backups 3 and 4", c)
		}
		if !p.Honour(p.Lookup(3)) {
			t.Error("pin to a backup node not honoured while backups are in use")
		}

		p.Lookup(1).State.SetStatus(StatusUp)
		p.Refresh()
		if c := count(p, 500); c[1] != 500 || p.BackupsInUse() {
			t.Errorf("once the accept node is back picks %v, want all on node 1", c)
		}
		if n, repin := p.Choose(9, 3); n.ID != 1 || !repin {
			t.Errorf("client pinned to backup after recovery got node %d (repin %v), want node 1 and repin", n.ID, repin)
		}
	})
}

func TestBackupServesWhenAcceptNodesAreRejectOrDrain(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo,
			spec{id: 1, mode: ModeReject},
			spec{id: 2, mode: ModeDrain},
			spec{id: 3, mode: ModeBackup})
		if c := count(p, 100); c[3] != 100 {
			t.Errorf("picks %v, want all on backup node 3", c)
		}
	})
}

func TestDownNodesAreNeverPickedEvenBeforeRefresh(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo, weighted(255, 1, 1, 1)...)
		p.Lookup(1).State.SetStatus(StatusDown)
		p.Lookup(2).State.SetStatus(StatusDown)
		c := count(p, 2000)
		if c[1] != 0 || c[2] != 0 || c[0] != 0 {
			t.Errorf("before Refresh picks %v, want none on DOWN nodes 1, 2 and none nil", c)
		}
		if p.Honour(p.Lookup(1)) {
			t.Error("pin to a DOWN node honoured")
		}
		// A stale table in backup mode must also fall back to live backups.
		q := newTestPool(t, algo, spec{id: 1}, spec{id: 2, mode: ModeBackup})
		q.Lookup(1).State.SetStatus(StatusDown)
		if n := q.Pick(3); n == nil || n.ID != 2 {
			t.Errorf("accept node DOWN before Refresh: picked %v, want backup node 2", n)
		}
	})
}

func TestUnknownStatusIsEligible(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo, spec{id: 1, status: StatusUnknown}, spec{id: 2, status: StatusDown})
		if n := p.Pick(1); n == nil || n.ID != 1 {
			t.Errorf("picked %v, want the unknown node 1", n)
		}
		if !p.Honour(p.Lookup(1)) {
			t.Error("pin to an unknown-status accept node not honoured")
		}
	})
}

func TestAllDownPicksNothing(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo, spec{id: 1}, spec{id: 2, mode: ModeBackup})
		for _, id := range []int{1, 2} {
			p.Lookup(id).State.SetStatus(StatusDown)
		}
		if n := p.Pick(1); n != nil {
			t.Errorf("before Refresh picked %d with every node DOWN", n.ID)
		}
		p.Refresh()
		if p.Available() || p.Pick(1) != nil {
			t.Error("after Refresh the pool still has an eligible node")
		}
		if n, repin := p.Choose(1, 1); n != nil || repin {
			t.Errorf("Choose = %v, %v; want nil, false", n, repin)
		}
		if p.PickExcluding(1, nil) != nil {
			t.Error("PickExcluding found a node with every node DOWN")
		}
	})
}

func TestRefreshFollowsStatusChanges(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo, spec{id: 1, status: StatusDown}, spec{id: 2})
		if c := count(p, 100); c[2] != 100 {
			t.Fatalf("picks %v, want all on node 2", c)
		}
		if p.Refresh() {
			t.Error("Refresh rebuilt with no status change")
		}
		p.Lookup(1).State.SetStatus(StatusUp)
		if c := count(p, 100); c[1] != 0 {
			t.Errorf("node 1 picked before Refresh: %v", c)
		}
		if !p.Refresh() {
			t.Fatal("Refresh did not rebuild after node 1 came UP")
		}
		if c := count(p, 1000); c[1] < 300 || c[2] < 300 {
			t.Errorf("after Refresh picks %v, want both nodes used", c)
		}
		// Unknown and UP are equally eligible: no rebuild.
		p.Lookup(1).State.SetStatus(StatusUnknown)
		if p.Refresh() {
			t.Error("Refresh rebuilt for an UP→unknown change")
		}
		// Reject and drain nodes are not in the tables: no rebuild.
		q := newTestPool(t, algo, spec{id: 1}, spec{id: 2, mode: ModeDrain}, spec{id: 3, mode: ModeReject})
		q.Lookup(2).State.SetStatus(StatusDown)
		q.Lookup(3).State.SetStatus(StatusDown)
		if q.Refresh() {
			t.Error("Refresh rebuilt for drain/reject status changes")
		}
	})
}

func TestPickExcludingNeverReturnsTheExcludedNode(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p := newTestPool(t, algo, weighted(255, 1, 1)...)
		heavy := p.Lookup(1)
		for i := range 500 {
			k := HashAddr(testAddr(i))
			n := p.PickExcluding(k, heavy)
			if n == nil || n == heavy {
				t.Fatalf("PickExcluding(node 1) = %v", n)
			}
			if algo == Source && p.PickExcluding(k, heavy) != n {
				t.Fatal("source retry is not the same node for the same key")
			}
		}
		one := newTestPool(t, algo, spec{id: 1})
		if n := one.PickExcluding(1, one.Lookup(1)); n != nil {
			t.Errorf("single-node pool retry returned node %d", n.ID)
		}
		// A node of another pool excludes nothing.
		if n := one.PickExcluding(1, heavy); n == nil || n.ID != 1 {
			t.Errorf("excluding a foreign node picked %v, want node 1", n)
		}
	})
}

func TestStickyPinsAreHonouredOnlyInTheirPool(t *testing.T) {
	shared := new(State)
	a, _ := NewPool(RoundRobin, []Node{{ID: 1, Weight: 1, State: shared}, {ID: 2, Weight: 1}})
	b, _ := NewPool(RoundRobin, []Node{{ID: 1, Weight: 9, State: shared}})
	if b.Honour(a.Lookup(1)) {
		t.Error("pool b honoured a *Node of pool a")
	}
	if n, repin := b.Choose(3, 1); n != b.Lookup(1) || repin {
		t.Errorf("Choose by ID across snapshots = %v, repin %v; want b's node 1 kept", n, repin)
	}
	if n, repin := b.Choose(3, 2); n == nil || n.ID != 1 || !repin {
		t.Errorf("pin to a removed node: %v, repin %v; want node 1 and repin", n, repin)
	}
	// Status is shared between snapshots.
	shared.SetStatus(StatusDown)
	if a.Honour(a.Lookup(1)) || b.Honour(b.Lookup(1)) {
		t.Error("DOWN set through one snapshot not seen by the other")
	}
}

func TestChooseWithoutPinPicksAndAsksToPin(t *testing.T) {
	p := newTestPool(t, RoundRobin, spec{id: 4})
	if n, repin := p.Choose(1, 0); n == nil || n.ID != 4 || !repin {
		t.Errorf("Choose(no pin) = %v, %v; want node 4, repin", n, repin)
	}
	if n, repin := p.Choose(1, 4); n.ID != 4 || repin {
		t.Errorf("Choose(pinned 4) = %v, %v; want node 4 kept", n, repin)
	}
}

func TestEmptyPool(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, algo Algorithm) {
		p, err := NewPool(algo, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Available() || p.Pick(1) != nil || p.PickExcluding(1, nil) != nil || p.Refresh() {
			t.Error("empty pool picked or rebuilt")
		}
	})
}
