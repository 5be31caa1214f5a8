package ha

import (
	"testing"
	"time"
)

// peersAt is a peers with no socket, started and reaching etcd since the given
// times ago (0: never), having heard seen, with the candidates known and the last
// holder read from etcd.
func peersAt(started, ok time.Duration, seen map[string]peerSeen, known []string, lastHolder string) *peers {
	p := &peers{host: "me", seen: seen, known: map[string]bool{}, lastHolder: lastHolder}
	for _, k := range known {
		p.known[k] = true
	}
	if started > 0 {
		p.started.Store(time.Now().Add(-started).UnixNano())
	}
	if ok > 0 {
		p.okSince.Store(time.Now().Add(-ok).UnixNano())
	}
	return p
}

func TestPeersAllCut(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name  string
		seen  map[string]peerSeen
		known []string
		want  bool
	}{
		{"nobody registered, nobody heard (one host)", map[string]peerSeen{}, nil, true},
		{"every host cut, heard lately", map[string]peerSeen{"a": {at: now}, "b": {at: now.Add(-300 * time.Millisecond)}}, []string{"a", "b"}, true},
		{"one reaches etcd", map[string]peerSeen{"a": {at: now}, "b": {at: now, ok: true}}, []string{"a", "b"}, false},
		{"one fell silent", map[string]peerSeen{"a": {at: now}, "b": {at: now.Add(-peerWindow - time.Millisecond)}}, []string{"a"}, false},
		{"one gone long ago, unregistered, is forgotten", map[string]peerSeen{"a": {at: now}, "b": {at: now.Add(-peerMemory - time.Second)}}, []string{"a"}, true},
		{"one registered never heard (its heartbeats blocked)", map[string]peerSeen{"a": {at: now}}, []string{"a", "b"}, false},
		{"one heard but not registered (joined meanwhile), cut too", map[string]peerSeen{"a": {at: now}, "c": {at: now}}, []string{"a"}, true},
	} {
		if got, _, why := peersAt(time.Minute, 0, c.seen, c.known, "me").allCut(); got != c.want {
			t.Errorf("%s: allCut %v (%s), want %v", c.name, got, why, c.want)
		}
	}
}

func TestPeersCampaignGate(t *testing.T) {
	now := time.Now()
	holding := map[string]peerSeen{"h": {at: now, holding: true}}
	released := map[string]peerSeen{"h": {at: now}}
	silent := map[string]peerSeen{"h": {at: now.Add(-peerWindow - time.Millisecond)}}
	for _, c := range []struct {
		name        string
		started, ok time.Duration
		seen        map[string]peerSeen
		lastHolder  string
		want        bool
	}{
		{"etcd unreachable", time.Minute, 0, released, "h", false},
		{"etcd for the whole gate", time.Minute, CampaignGate + time.Millisecond, holding, "h", true},
		{"etcd just regained, a host still holds", time.Minute, time.Millisecond, holding, "h", false},
		{"etcd just regained, the last holder let go", time.Minute, time.Millisecond, released, "h", true},
		{"etcd just regained, the last holder silent", time.Minute, time.Millisecond, silent, "h", false},
		{"etcd just regained, the last holder never heard (blocked, or unknown)", time.Minute, time.Millisecond, map[string]peerSeen{}, "x", false},
		{"etcd just regained, no holder ever seen", time.Minute, time.Millisecond, released, "", false},
		{"this host's own key from before a restart", time.Minute, time.Millisecond, map[string]peerSeen{}, "me", true},
		{"just started: nobody heard yet proves nothing", time.Millisecond, time.Millisecond, released, "h", false},
	} {
		if got := peersAt(c.started, c.ok, c.seen, nil, c.lastHolder).gateOpen(); got != c.want {
			t.Errorf("%s: gateOpen %v, want %v", c.name, got, c.want)
		}
	}
}
