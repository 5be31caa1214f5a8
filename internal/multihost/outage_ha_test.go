package multihost

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestFrontendEtcdOutage cuts every host off from etcd (a blackhole route to it in
// each host's namespace; etcd itself stays up, so the holder's lease lapses there)
// under load, with an ARP watcher in the client namespace:
//
//   - all cut for 6 s (three leases), then all healed: the holder keeps the
//     addresses throughout (the others tell it, over the frontend link, that they
//     cannot reach etcd either), claims the key again when etcd answers, and no
//     request fails;
//   - all cut for 3 s, then every host but the holder healed: the holder lets go
//     when it hears that another host reaches etcd, before that host (after its
//     campaign gate) takes over; never two hosts answer ARP at once.
//
// The holder cut off alone lets go as before: TestFrontendFailover's partition.
func TestFrontendEtcdOutage(t *testing.T) {
	hostIDs := []string{"a", "b", "c"}
	l := newHALab(t, hostIDs...)
	l.serveBackend()
	endpoint, cli := startHAEtcd(t)
	hosts := map[string]*host{}
	for _, id := range hostIDs {
		hosts[id] = l.startHAHost(t, endpoint, id, haPool, "5s")
	}
	label := "ha-outage"
	nb := webNB(t, hosts["a"], label)
	vip := netip.MustParseAddr(*nb.IPv4)
	front := netip.AddrPortFrom(vip, 80).String()
	waitServed := func(within time.Duration) { t.Helper(); l.waitServed(t, cli, front, within) }
	waitServed(15 * time.Second)
	cut := func(ids ...string) {
		for _, id := range ids {
			l.ip("-n", l.ns[id], "route", "add", "blackhole", haGateway+"/32")
		}
	}
	heal := func(ids ...string) {
		for _, id := range ids {
			l.ip("-n", l.ns[id], "route", "del", "blackhole", haGateway+"/32")
		}
	}
	// count is how many times h logged msg in (after, before).
	count := func(h *host, msg string, after, before time.Time) int {
		n := 0
		for _, line := range strings.Split(h.log(), "\n") {
			if tm := logTimeOf(line); strings.Contains(line, `"msg":"`+msg+`"`) && tm.After(after) && tm.Before(before) {
				n++
			}
		}
		return n
	}
	never := time.Now().Add(time.Hour)

	t.Run("every host cut off", func(t *testing.T) {
		holder := holderOf(t, cli)
		w := l.watchARP(vip)
		ld := l.startLoad(front)
		time.Sleep(time.Second)
		t0 := time.Now()
		cut(hostIDs...)
		time.Sleep(6 * time.Second)
		heal(hostIDs...)
		t1 := time.Now()
		time.Sleep(4 * time.Second)
		rs := ld.finish()
		answered, macs, double := w.stop()
		var during []result
		for _, r := range rs {
			if r.start.Before(t1) {
				during = append(during, r)
			}
		}
		total, failed, _, _, errs := summarize(during, t0)
		allTotal, allFailed, _, _, allErrs := summarize(rs, t0)
		now := holderOf(t, cli)
		t.Logf("all cut 6 s: holder %s → %s; released during the outage %d times, after %d; rode out: %v; claimed again: %v; requests started during the outage %d, failed %d %v; in all %d, failed %d %v; ARP %d rounds by %v, %d by two hosts",
			holder, now, count(hosts[holder], msgRelease, t0, t1), count(hosts[holder], msgRelease, t1, never),
			count(hosts[holder], "etcd unreachable, and every other host says it cannot reach it either: keeping the frontend addresses", t0, t1) > 0,
			count(hosts[holder], "etcd reachable again: the lease had lapsed; claimed the frontend addresses again", t1, never) > 0,
			total, failed, errs, allTotal, allFailed, allErrs, answered, macs, len(double))
		if n := count(hosts[holder], msgRelease, t0, t1); n != 0 {
			t.Errorf("the holder %s let go during the outage (%d releases)\n%s", holder, n, hosts[holder].log())
		}
		for _, id := range hostIDs {
			if id != holder && count(hosts[id], msgHold, t0, t1) != 0 {
				t.Errorf("%s held during the outage", id)
			}
		}
		if failed != 0 {
			t.Errorf("%d of %d requests started during the outage failed: %v", failed, total, errs)
		}
		// After the heal the holder renews or claims its key again; should its
		// connection to etcd lag behind another host's, it lets go first (0.5 s
		// of retries, inside the other's 2 s gate), and the other takes over.
		if len(double) > 0 {
			t.Errorf("ARP answers by %v, %d rounds by two hosts: %v", macs, len(double), double)
		}
		if now != holder {
			if released, held := logTime(hosts[holder], msgRelease), logTime(hosts[now], msgHold); released.IsZero() || !released.Before(held) {
				t.Errorf("after the heal %s holds (held at %s), %s released at %s: want the release first", now, held, holder, released)
			}
		}
	})

	t.Run("healed without the holder", func(t *testing.T) {
		holder := holderOf(t, cli)
		var others []string
		for _, id := range hostIDs {
			if id != holder {
				others = append(others, id)
			}
		}
		w := l.watchARP(vip)
		ld := l.startLoad(front)
		time.Sleep(time.Second)
		t0 := time.Now()
		cut(hostIDs...)
		time.Sleep(3 * time.Second)
		heal(others...)
		t1 := time.Now()
		var next string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if next = holderOf(t, cli); next != "" && next != holder {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nobody took over from %s, cut off while the others reach etcd again", holder)
			}
		}
		waitServed(5 * time.Second)
		time.Sleep(time.Second)
		rs := ld.finish()
		answered, macs, double := w.stop()
		total, failed, _, _, errs := summarize(rs, t0)
		released, held := logTime(hosts[holder], msgRelease), logTime(hosts[next], msgHold)
		t.Logf("all cut 3 s, then all but %s healed: %s released at heal+%s, %s held at heal+%s; %d requests, %d failed %v; ARP %d rounds by %v, %d by two hosts",
			holder, holder, released.Sub(t1).Round(time.Millisecond), next, held.Sub(t1).Round(time.Millisecond),
			total, failed, errs, answered, macs, len(double))
		if released.Before(t1) || !released.Before(held) {
			t.Errorf("%s released at %s, %s held at %s (heal at %s): want the release after the heal and before the hold\n%s", holder, released, next, held, t1, hosts[holder].log())
		}
		if len(double) > 0 {
			t.Errorf("two hosts answered ARP for %s at once: %v", vip, double)
		}
		heal(holder)
	})

	t.Run("holder cut off and deaf to heartbeats", func(t *testing.T) {
		// A host whose heartbeat port is blocked (it never hears the others)
		// becomes the holder, then only it is cut off from etcd. It must not take
		// the silence for "nobody reaches etcd": the others are registered in
		// etcd, so it lets go as before.
		if _, err := exec.LookPath("nft"); err != nil {
			t.Skip("needs nft to drop the heartbeats in a host's namespace")
		}
		waitServed(10 * time.Second)
		old := holderOf(t, cli)
		var others []string
		for _, id := range hostIDs {
			if id != old {
				others = append(others, id)
			}
		}
		holder, third := others[0], others[1]
		if out, err := exec.Command("ip", "netns", "exec", l.ns[holder], "nft",
			"add table inet nbtest; add chain inet nbtest in { type filter hook input priority 0; }; add rule inet nbtest in udp dport 7948 drop").CombinedOutput(); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
		defer exec.Command("ip", "netns", "exec", l.ns[holder], "nft", "delete table inet nbtest").Run()
		start := func(id string) {
			hosts[id] = l.startHAHost(t, endpoint, id, haPool, "5s")
		}
		// The deaf host restarted (it has heard nobody since), the two others
		// stopped: it takes over; then they come back.
		hosts[holder].stop(t)
		start(holder)
		hosts[third].stop(t)
		hosts[old].stop(t)
		for deadline := time.Now().Add(10 * time.Second); holderOf(t, cli) != holder; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not take over (holder %q)", holder, holderOf(t, cli))
			}
		}
		start(third)
		start(old)
		waitServed(10 * time.Second)
		time.Sleep(time.Second) // the holder reads the others' registrations (every 200 ms)
		w := l.watchARP(vip)
		t0 := time.Now()
		cut(holder)
		defer heal(holder)
		var next string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if next = holderOf(t, cli); next != "" && next != holder {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nobody took over from %s, cut off", holder)
			}
		}
		time.Sleep(500 * time.Millisecond)
		answered, macs, double := w.stop()
		released, held := logTime(hosts[holder], msgRelease), logTime(hosts[next], msgHold)
		t.Logf("%s cut off and deaf: released at +%s, %s held at +%s; ARP %d rounds by %v, %d by two hosts",
			holder, released.Sub(t0).Round(time.Millisecond), next, held.Sub(t0).Round(time.Millisecond), answered, macs, len(double))
		if released.Before(t0) || !released.Before(held) {
			t.Errorf("%s released at %s, %s held at %s: want the release first\n%s", holder, released, next, held, hosts[holder].log())
		}
		if len(double) > 0 {
			t.Errorf("two hosts answered ARP for %s at once: %v", vip, double)
		}
	})
}

// logTimeOf is the time of one log line (zero when it has none).
func logTimeOf(line string) time.Time {
	i := strings.Index(line, `"time":"`)
	if i < 0 {
		return time.Time{}
	}
	rest := line[i+8:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}
	}
	tm, _ := time.Parse(time.RFC3339Nano, rest[:j])
	return tm
}
