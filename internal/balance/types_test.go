package balance

import "testing"

func TestEnumStringsRoundTrip(t *testing.T) {
	for v, s := range map[Status]string{StatusUnknown: "Unknown", StatusUp: "UP", StatusDown: "DOWN", Status(7): "Status(7)"} {
		if v.String() != s {
			t.Errorf("Status(%d).String() = %q, want %q", v, v.String(), s)
		}
	}
	for _, s := range []string{"accept", "reject", "drain", "backup"} {
		v, err := ParseMode(s)
		if err != nil || v.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, v, err)
		}
	}
	for _, s := range []string{"roundrobin", "leastconn", "source", "ring_hash"} {
		v, err := ParseAlgorithm(s)
		if err != nil || v.String() != s {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", s, v, err)
		}
	}
}

func TestEnumParsersRefuseOtherSpellings(t *testing.T) {
	for _, s := range []string{"", "Accept", "maint", "backup\x00"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) accepted", s)
		}
	}
	for _, s := range []string{"", "round_robin", "ringhash", "Source"} {
		if _, err := ParseAlgorithm(s); err == nil {
			t.Errorf("ParseAlgorithm(%q) accepted", s)
		}
	}
	if got := Mode(9).String(); got != "Mode(9)" {
		t.Errorf("Mode(9).String() = %q", got)
	}
}

func TestStateSetStatusReportsChange(t *testing.T) {
	var s State
	if s.Status() != StatusUnknown {
		t.Fatalf("zero State status = %v, want unknown", s.Status())
	}
	steps := []struct {
		set     Status
		changed bool
	}{{StatusUp, true}, {StatusUp, false}, {StatusDown, true}, {StatusDown, false}, {StatusUnknown, true}}
	for _, st := range steps {
		if got := s.SetStatus(st.set); got != st.changed {
			t.Errorf("SetStatus(%v) changed = %v, want %v", st.set, got, st.changed)
		}
	}
	s.Acquire()
	s.Acquire()
	s.Release()
	if s.Active() != 1 {
		t.Errorf("Active = %d, want 1", s.Active())
	}
}

func TestNewPoolRefusesInvalidNodes(t *testing.T) {
	cases := []struct {
		name  string
		algo  Algorithm
		nodes []Node
	}{
		{"no algorithm", Algorithm{}, nil},
		{"zero ID", RoundRobin, []Node{{ID: 0, Weight: 1}}},
		{"negative ID", RoundRobin, []Node{{ID: -3, Weight: 1}}},
		{"duplicate ID", RoundRobin, []Node{{ID: 1, Weight: 1}, {ID: 1, Weight: 2}}},
		{"weight 0", RoundRobin, []Node{{ID: 1, Weight: 0}}},
		{"weight 256", RoundRobin, []Node{{ID: 1, Weight: 256}}},
		{"unknown mode", RoundRobin, []Node{{ID: 1, Weight: 1, Mode: Mode(4)}}},
		{"too many nodes", RoundRobin, make([]Node, MaxNodes+1)},
	}
	for _, c := range cases {
		if _, err := NewPool(c.algo, c.nodes); err == nil {
			t.Errorf("%s: NewPool accepted it", c.name)
		}
	}
}

func TestPoolLookupAndTokens(t *testing.T) {
	key := []byte("host secret")
	p, err := NewPool(RoundRobin, []Node{{ID: 7, Weight: 1}, {ID: 9, Weight: 1}}, WithCookieKey(key))
	if err != nil {
		t.Fatal(err)
	}
	n := p.Lookup(9)
	if n == nil || n.ID != 9 || n.State == nil {
		t.Fatalf("Lookup(9) = %+v", n)
	}
	if p.Lookup(8) != nil {
		t.Error("Lookup(8) found a node that is not in the pool")
	}
	if got := p.ByToken(n.Token()); got != n {
		t.Errorf("ByToken(Token()) = %v, want node 9", got)
	}
	if n.Token() != CookieToken(key, 9) || len(n.Token()) != 16 {
		t.Errorf("token %q, want CookieToken(key, 9) of 16 hex digits", n.Token())
	}
	if p.Lookup(7).Token() == n.Token() {
		t.Error("two nodes share a token")
	}
	if CookieToken([]byte("other"), 9) == n.Token() {
		t.Error("token does not depend on the key")
	}
	if p.ByToken("9") != nil || p.ByToken("") != nil {
		t.Error("ByToken accepted a forged token")
	}
}

func TestWithPreviousReusesTokensOfTheSameKeyOnly(t *testing.T) {
	key := []byte("k1")
	nodes := func(ids ...int) []Node {
		var out []Node
		for _, id := range ids {
			out = append(out, Node{ID: id, Weight: 1})
		}
		return out
	}
	old, err := NewPool(RoundRobin, nodes(1, 2), WithCookieKey(key))
	if err != nil {
		t.Fatal(err)
	}
	// A token NewPool did not derive shows it was taken from prev.
	old.byID[2].token = "from-prev"
	next, err := NewPool(RoundRobin, nodes(2, 3), WithCookieKey(key), WithPrevious(old))
	if err != nil {
		t.Fatal(err)
	}
	if next.Lookup(2).Token() != "from-prev" || next.Lookup(3).Token() != CookieToken(key, 3) {
		t.Fatalf("tokens %q %q", next.Lookup(2).Token(), next.Lookup(3).Token())
	}
	if next.ByToken("from-prev") != next.Lookup(2) {
		t.Fatal("ByToken does not find the reused token")
	}
	other, err := NewPool(RoundRobin, nodes(2), WithCookieKey([]byte("k2")), WithPrevious(old))
	if err != nil {
		t.Fatal(err)
	}
	if other.Lookup(2).Token() != CookieToken([]byte("k2"), 2) {
		t.Fatal("a pool with another key reused tokens")
	}
}

func TestWithoutCookiesHasNoTokens(t *testing.T) {
	p, err := NewPool(RoundRobin, []Node{{ID: 1, Weight: 1}, {ID: 2, Weight: 1}}, WithCookieKey([]byte("k")), WithoutCookies())
	if err != nil {
		t.Fatal(err)
	}
	if p.Lookup(1).Token() != "" || p.ByToken(CookieToken([]byte("k"), 1)) != nil || p.ByToken("") != nil {
		t.Fatal("a pool without cookies has tokens")
	}
	// A later pool with cookies derives them rather than taking the empty ones.
	q, err := NewPool(RoundRobin, []Node{{ID: 1, Weight: 1}}, WithCookieKey([]byte("k")), WithPrevious(p))
	if err != nil {
		t.Fatal(err)
	}
	if q.Lookup(1).Token() != CookieToken([]byte("k"), 1) {
		t.Fatalf("token %q", q.Lookup(1).Token())
	}
}
