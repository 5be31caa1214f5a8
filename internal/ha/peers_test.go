package ha

import (
	"testing"
	"time"
)

// peersAt is a peers with no socket, started and reaching etcd since the given
// times ago (0: never), having heard seen.
func peersAt(started, ok time.Duration, seen map[string]peerSeen) *peers {
	p := &peers{host: "me", seen: seen}
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
		name string
		seen map[string]peerSeen
		want bool
	}{
		{"nobody heard", map[string]peerSeen{}, true},
		{"every host cut, heard lately", map[string]peerSeen{"a": {at: now}, "b": {at: now.Add(-300 * time.Millisecond)}}, true},
		{"one reaches etcd", map[string]peerSeen{"a": {at: now}, "b": {at: now, ok: true}}, false},
		{"one fell silent", map[string]peerSeen{"a": {at: now}, "b": {at: now.Add(-peerWindow - time.Millisecond)}}, false},
		{"one gone long ago is forgotten", map[string]peerSeen{"a": {at: now}, "b": {at: now.Add(-peerMemory - time.Second)}}, true},
	} {
		if got, _, why := peersAt(time.Minute, 0, c.seen).allCut(); got != c.want {
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
		want        bool
	}{
		{"etcd unreachable", time.Minute, 0, released, false},
		{"etcd for the whole gate", time.Minute, CampaignGate + time.Millisecond, holding, true},
		{"etcd just regained, a host still holds", time.Minute, time.Millisecond, holding, false},
		{"etcd just regained, the holder let go", time.Minute, time.Millisecond, released, true},
		{"etcd just regained, the holder silent", time.Minute, time.Millisecond, silent, false},
		{"just started: nobody heard yet proves nothing", time.Millisecond, time.Millisecond, map[string]peerSeen{}, false},
		{"listened long enough, nobody holds", peerWindow + time.Millisecond, time.Millisecond, map[string]peerSeen{}, true},
	} {
		if got := peersAt(c.started, c.ok, c.seen).gateOpen(); got != c.want {
			t.Errorf("%s: gateOpen %v, want %v", c.name, got, c.want)
		}
	}
}
