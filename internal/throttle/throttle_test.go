package throttle

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

func newLimiter(t testing.TB, perSecond int, o Options) *Limiter {
	t.Helper()
	if o.Seed == 0 {
		o.Seed = 1
	}
	l, err := New(perSecond, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestAllowancesFollowASlidingWindow(t *testing.T) {
	type step struct {
		at   int64 // ms
		want bool
	}
	cases := []struct {
		rate  int
		steps []step
	}{
		{3, []step{{0, true}, {0, true}, {0, true}, {0, false}, {999, false}, {1000, true}, {1000, true}, {1000, true}, {1000, false}}},
		{2, []step{{0, true}, {500, true}, {900, false}, {1000, true}, {1400, false}, {1500, true}, {1999, false}, {2000, true}}},
		{1, []step{{0, true}, {1, false}, {999, false}, {1000, true}, {1500, false}, {5000, true}}},
		// A waiting client still gets only N in any second (a token
		// bucket would allow 2N here).
		{5, []step{{0, true}, {0, true}, {0, true}, {0, true}, {0, true}, {999, false}, {1000, true}, {1000, true}}},
	}
	for _, c := range cases {
		l := newLimiter(t, c.rate, Options{})
		for i, s := range c.steps {
			if got := l.Allow(addr(1), s.at*ms); got != s.want {
				t.Errorf("rate %d, step %d at %d ms: Allow = %v, want %v", c.rate, i, s.at, got, s.want)
			}
		}
	}
}

func TestNoSecondEverHoldsMoreThanTheLimit(t *testing.T) {
	const rate = 4
	l := newLimiter(t, rate, Options{})
	var allowed []int64
	for now := int64(0); now < 5000*ms; now += 37 * ms {
		for range 3 { // more attempts than the limit allows
			if l.Allow(addr(1), now) {
				allowed = append(allowed, now)
			}
		}
	}
	for i := range allowed {
		if i >= rate && allowed[i]-allowed[i-rate] < int64(time.Second) {
			t.Fatalf("%d connections allowed within %d ms", rate+1, (allowed[i]-allowed[i-rate])/ms)
		}
	}
	// 5 s at 4/s, beginning at 0: about 20 allowed.
	if len(allowed) < 18 {
		t.Errorf("only %d connections allowed over 5 s at 4/s", len(allowed))
	}
}

func TestRefusedConnectionsAreNotCounted(t *testing.T) {
	l := newLimiter(t, 1, Options{})
	l.Allow(addr(1), 0)
	for now := int64(1); now < 1000*ms; now += 10 * ms {
		if l.Allow(addr(1), now) {
			t.Fatalf("allowed at %d ns", now)
		}
	}
	if !l.Allow(addr(1), 1000*ms) {
		t.Error("retries within the second pushed the window back")
	}
}

func TestClientsAreIndependent(t *testing.T) {
	l := newLimiter(t, 2, Options{})
	for i := range 1000 {
		first, second := l.Allow(addr(i), 0), l.Allow(addr(i), 0)
		if !first || !second {
			t.Fatalf("client %d refused its first connections", i)
		}
	}
	for i := range 1000 {
		if l.Allow(addr(i), 0) {
			t.Fatalf("client %d allowed a third connection", i)
		}
	}
}

func TestIPv4AndMappedFormAreOneClient(t *testing.T) {
	l := newLimiter(t, 1, Options{})
	l.Allow(netip.MustParseAddr("192.0.2.5"), 0)
	if l.Allow(netip.MustParseAddr("::ffff:192.0.2.5"), 0) {
		t.Error("IPv4-mapped form of a throttled client allowed")
	}
	if !l.Allow(netip.MustParseAddr("2001:db8::5"), 0) {
		t.Error("another client refused")
	}
}

func TestOffAndInvalidLimits(t *testing.T) {
	l, err := New(0, Options{})
	if err != nil || l != nil {
		t.Fatalf("New(0) = %v, %v; want nil limiter (off)", l, err)
	}
	for range 100 {
		if !l.Allow(addr(1), 0) {
			t.Fatal("off limiter refused a connection")
		}
	}
	if l.Len() != 0 || l.Sweep(0) != 0 || l.PerSecond() != 0 || l.Cap() != 0 {
		t.Error("nil limiter reports state")
	}
	for _, bad := range []int{-1, MaxPerSecond + 1, 1000} {
		if _, err := New(bad, Options{}); err == nil {
			t.Errorf("New(%d) accepted", bad)
		}
	}
	if l, err := New(MaxPerSecond, Options{}); err != nil || l.PerSecond() != MaxPerSecond {
		t.Errorf("New(%d) = %v, %v", MaxPerSecond, l, err)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	l := newLimiter(t, 5, Options{MaxClients: 256, Shards: 8})
	// A flood of distinct addresses within one second.
	for i := range 100000 {
		l.Allow(addr(i), int64(i)) // i ns: all within the same second
		if i%1000 == 0 && l.Len() > l.Cap() {
			t.Fatalf("after %d addresses Len %d > Cap %d", i, l.Len(), l.Cap())
		}
	}
	if l.Cap() != 256 || l.Len() > 256 {
		t.Errorf("Cap %d, Len %d; want at most 256", l.Cap(), l.Len())
	}
	// Idle clients are forgotten.
	before := l.Len()
	if n := l.Sweep(int64(2 * time.Second)); n != before || l.Len() != 0 {
		t.Errorf("Sweep dropped %d of %d, Len %d; want all dropped", n, before, l.Len())
	}
}

func TestFullLimiterDropsIdleClientsFirst(t *testing.T) {
	l := newLimiter(t, 1, Options{MaxClients: 4, Shards: 1})
	l.Allow(addr(1), 0)             // idle from 1 s on
	l.Allow(addr(2), 0)             // idle from 1 s on
	l.Allow(addr(3), 600*ms)        // busy until 1.6 s
	l.Allow(addr(4), 600*ms)        // busy until 1.6 s
	l.Allow(addr(5), 1200*ms)       // needs room: 1 and 2 are idle
	l.Allow(addr(6), 1200*ms)       // fits in the second freed record
	for _, i := range []int{3, 4} { // still throttled, so not forgotten
		if l.Allow(addr(i), 1300*ms) {
			t.Errorf("busy client %d forgotten to make room", i)
		}
	}
	if l.Len() != 4 {
		t.Errorf("Len %d, want 4", l.Len())
	}
}

func TestAllowDoesNotAllocateForAKnownClient(t *testing.T) {
	l := newLimiter(t, 20, Options{})
	a := netip.MustParseAddr("2001:db8::7")
	now := int64(0)
	if n := testing.AllocsPerRun(1000, func() { now += 100 * ms; l.Allow(a, now) }); n != 0 {
		t.Errorf("Allow for a known client allocates %v times", n)
	}
}

func TestConcurrentClients(t *testing.T) {
	const rate = 3
	l := newLimiter(t, rate, Options{MaxClients: 1 << 12})
	var allowed [64]atomic.Int32
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				c := (i*13 + g) % 64
				if l.Allow(addr(c), int64(i%100)) { // all within one second
					allowed[c].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for c := range allowed {
		if n := allowed[c].Load(); n != rate {
			t.Errorf("client %d allowed %d times within one second, want %d", c, n, rate)
		}
	}
}

func BenchmarkAllowKnownClient(b *testing.B) {
	l := newLimiter(b, 20, Options{})
	a := netip.MustParseAddr("198.51.100.20")
	b.ReportAllocs()
	now := int64(0)
	for b.Loop() {
		now += 50 * ms // 20/s: always allowed, so every call writes
		l.Allow(a, now)
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	l := newLimiter(b, 20, Options{})
	const clients = 4096
	for i := range clients {
		l.Allow(addr(i), 0)
	}
	var base atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		off := int(base.Add(1)) * 1000
		i := 0
		for pb.Next() {
			l.Allow(addr((off+i)%clients), int64(i)*ms)
			i++
		}
	})
}
