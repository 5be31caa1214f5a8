package balance

import "testing"

// FuzzPool builds pools from arbitrary bytes, changes statuses with and
// without Refresh, and checks the rules every pick must keep: never a reject
// or drain node for a new client, never a DOWN node, never the excluded node,
// a backup only when no accept node can take the client, and nil only when
// nothing can.
func FuzzPool(f *testing.F) {
	f.Add([]byte{0, 3, 5, 0, 1, 1, 0, 0, 1, 0, 0, 2, 9, 2, 8, 1, 0, 2, 7})
	f.Add([]byte{1, 4, 255, 3, 2, 10, 2, 0, 20, 1, 1, 4, 0, 0, 0, 10, 2, 3, 2, 5, 1})
	f.Add([]byte{2, 5, 1, 0, 0, 2, 0, 2, 3, 3, 0, 4, 1, 1, 5, 2, 0, 2, 0, 6, 1, 0, 6, 2, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		algo := algorithms[int(data[0])%len(algorithms)]
		n := int(data[1] % 12)
		data = data[2:]
		if len(data) < 3*n {
			return
		}
		nodes := make([]Node, n)
		for i := range nodes {
			st := new(State)
			st.SetStatus(Status(data[3*i+2] % 3))
			nodes[i] = Node{ID: i + 1, Weight: int(data[3*i])%MaxWeight + 1, Mode: Mode(data[3*i+1] % 4), State: st}
		}
		data = data[3*n:]
		p, err := NewPool(algo, nodes)
		if err != nil {
			t.Fatalf("valid nodes refused: %v", err)
		}
		fresh := true // no status change since the last Refresh
		for k := 0; k+1 < len(data); k += 2 {
			op, arg := data[k], data[k+1]
			key := uint64(arg) * 0x9e3779b97f4a7c15
			switch op % 5 {
			case 0:
				if n > 0 {
					p.Node(int(arg) % n).State.SetStatus(Status(op / 5 % 3))
					fresh = false
				}
			case 1:
				p.Refresh()
				fresh = true
			case 2:
				got := p.Pick(key)
				checkPick(t, p, got, nil, fresh)
				if got != nil && algo == LeastConn && arg%2 == 0 {
					got.State.Acquire()
				}
			case 3:
				var ex *Node
				if n > 0 {
					ex = p.Node(int(arg) % n)
				}
				checkPick(t, p, p.PickExcluding(key, ex), ex, fresh)
			case 4:
				pinned := int(arg) % (n + 2) // sometimes none, sometimes unknown
				got, repin := p.Choose(key, pinned)
				if pn := p.Lookup(pinned); pn != nil && p.Honour(pn) {
					if got != pn || repin {
						t.Fatalf("honourable pin to %d not kept: got %v, repin %v", pinned, got, repin)
					}
					continue
				}
				if repin != (got != nil) {
					t.Fatalf("Choose repin %v for node %v", repin, got)
				}
				checkPick(t, p, got, nil, fresh)
			}
		}
	})
}

// checkPick asserts the rules of a pick for a new client that excludes ex.
func checkPick(t *testing.T, p *Pool, got, ex *Node, fresh bool) {
	t.Helper()
	liveAccept, liveBackup := false, false
	for i := range p.Len() {
		nd := p.Node(i)
		if nd == ex || nd.State.Status() == StatusDown {
			continue
		}
		liveAccept = liveAccept || nd.Mode == ModeAccept
		liveBackup = liveBackup || nd.Mode == ModeBackup
	}
	if got == nil {
		// With an up-to-date table, nil means nothing can take the client.
		if fresh && (liveAccept || liveBackup) {
			t.Fatalf("nil pick while a node is eligible (accept %v, backup %v)", liveAccept, liveBackup)
		}
		return
	}
	if p.Lookup(got.ID) != got {
		t.Fatalf("picked node %d from another pool", got.ID)
	}
	if got == ex {
		t.Fatalf("picked the excluded node %d", got.ID)
	}
	if st := got.State.Status(); st == StatusDown {
		t.Fatalf("picked DOWN node %d", got.ID)
	}
	switch got.Mode {
	case ModeReject, ModeDrain:
		t.Fatalf("picked %v node %d for a new client", got.Mode, got.ID)
	case ModeBackup:
		if liveAccept && !p.BackupsInUse() {
			t.Fatalf("picked backup node %d while an accept node is eligible", got.ID)
		}
		if fresh && liveAccept {
			t.Fatalf("picked backup node %d with an up-to-date table and an eligible accept node", got.ID)
		}
	}
}

// FuzzParse checks that the enum parsers accept exactly the strings the
// String methods produce.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"accept", "reject", "drain", "backup", "roundrobin", "leastconn", "source", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := ParseMode(s); err == nil && m.String() != s {
			t.Errorf("ParseMode(%q) = %v", s, m)
		}
		if a, err := ParseAlgorithm(s); err == nil && a.String() != s {
			t.Errorf("ParseAlgorithm(%q) = %v", s, a)
		}
	})
}
