package balance

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

const minute = int64(time.Minute)

func TestStickyPinExpiresAfterIdleTTL(t *testing.T) {
	tb := NewStickyTable(StickyOptions{TTL: 30 * time.Minute, Seed: 1})
	a := netip.MustParseAddr("192.0.2.7")
	tb.Set(a, 5, 0)
	if id, ok := tb.Get(a, 29*minute); !ok || id != 5 {
		t.Fatalf("Get at 29 min = %d, %v; want 5", id, ok)
	}
	// The use at 29 min restarted the 30 minutes.
	if id, ok := tb.Get(a, 58*minute); !ok || id != 5 {
		t.Fatalf("Get at 58 min (29 after last use) = %d, %v; want 5", id, ok)
	}
	if _, ok := tb.Get(a, 88*minute); ok {
		t.Fatal("pin still there 30 min after its last use")
	}
}

func TestStickyDefaultsMatchLinode(t *testing.T) {
	tb := NewStickyTable(StickyOptions{})
	a := netip.MustParseAddr("2001:db8::1")
	tb.Set(a, 1, 0)
	if _, ok := tb.Get(a, 30*minute-1); !ok {
		t.Error("default TTL shorter than 30 minutes")
	}
	if _, ok := tb.Get(a, 60*minute-1); ok {
		t.Error("default TTL longer than 30 minutes")
	}
	if tb.Cap() > DefaultStickyMaxEntries || tb.Cap() < DefaultStickyMaxEntries-DefaultStickyShards {
		t.Errorf("default Cap = %d, want about %d", tb.Cap(), DefaultStickyMaxEntries)
	}
}

func TestStickyKeysAreClientAddresses(t *testing.T) {
	tb := NewStickyTable(StickyOptions{Seed: 1})
	v4 := netip.MustParseAddr("198.51.100.9")
	tb.Set(v4, 3, 0)
	if id, ok := tb.Get(netip.MustParseAddr("::ffff:198.51.100.9"), 1); !ok || id != 3 {
		t.Errorf("IPv4-mapped form of a pinned IPv4 client: %d, %v; want 3", id, ok)
	}
	if _, ok := tb.Get(netip.MustParseAddr("198.51.100.10"), 1); ok {
		t.Error("a neighbouring address shares the pin")
	}
	// The unspecified address must not match deleted slots.
	tb.Delete(v4)
	if _, ok := tb.Get(netip.IPv6Unspecified(), 1); ok {
		t.Error(":: found a pin it never had")
	}
	tb.Set(netip.IPv6Unspecified(), 8, 1)
	if id, ok := tb.Get(netip.IPv6Unspecified(), 2); !ok || id != 8 {
		t.Errorf(":: pinned to 8: got %d, %v", id, ok)
	}
}

func TestStickySetReplacesAndDeleteRemoves(t *testing.T) {
	tb := NewStickyTable(StickyOptions{Seed: 1})
	a := netip.MustParseAddr("192.0.2.1")
	tb.Set(a, 1, 0)
	tb.Set(a, 2, 1)
	if id, _ := tb.Get(a, 2); id != 2 || tb.Len() != 1 {
		t.Errorf("after repin: id %d, Len %d; want 2, 1", id, tb.Len())
	}
	tb.Delete(a)
	tb.Delete(a)
	if _, ok := tb.Get(a, 3); ok || tb.Len() != 0 {
		t.Errorf("after Delete: found %v, Len %d", ok, tb.Len())
	}
}

func TestStickyTableSizeIsBounded(t *testing.T) {
	tb := NewStickyTable(StickyOptions{MaxEntries: 100, Shards: 4, Seed: 7})
	for i := range 10000 {
		tb.Set(testAddr(i), i%5+1, int64(i))
		if tb.Len() > tb.Cap() {
			t.Fatalf("after %d inserts Len %d > Cap %d", i+1, tb.Len(), tb.Cap())
		}
	}
	if tb.Cap() != 100 || tb.Len() < 90 {
		t.Errorf("Cap %d, Len %d; want 100 and nearly full", tb.Cap(), tb.Len())
	}
	// The most recent pins are the ones kept.
	for i := 9990; i < 10000; i++ {
		if id, ok := tb.Get(testAddr(i), 10000); !ok || id != i%5+1 {
			t.Errorf("recent pin %d lost", i)
		}
	}
}

func TestStickyEvictsExpiredThenLeastRecentlyUsed(t *testing.T) {
	tb := NewStickyTable(StickyOptions{MaxEntries: 4, Shards: 1, TTL: time.Hour, Seed: 3})
	for i := range 4 {
		tb.Set(testAddr(i), i+1, int64(i))
	}
	tb.Get(testAddr(0), 10) // 0 is now the most recently used
	tb.Set(testAddr(4), 5, 11)
	if _, ok := tb.Get(testAddr(1), 12); ok {
		t.Error("least recently used pin (1) survived eviction")
	}
	for _, i := range []int{0, 2, 3, 4} {
		if _, ok := tb.Get(testAddr(i), 12); !ok {
			t.Errorf("pin %d evicted instead of the least recently used", i)
		}
	}
}

func TestStickyFullTableDropsExpiredPinsBeforeLiveOnes(t *testing.T) {
	tb := NewStickyTable(StickyOptions{MaxEntries: 4, Shards: 1, TTL: time.Hour, Seed: 3})
	tb.Set(testAddr(0), 1, 0)
	tb.Set(testAddr(1), 1, 0)
	tb.Set(testAddr(2), 1, 30*minute)
	tb.Set(testAddr(3), 1, 30*minute)
	now := 60*minute + 1 // pins 0 and 1 have expired, 2 and 3 have not
	tb.Set(testAddr(4), 1, now)
	tb.Set(testAddr(5), 1, now)
	for i := 2; i <= 5; i++ {
		if _, ok := tb.Get(testAddr(i), now); !ok {
			t.Errorf("live pin %d evicted while expired pins could go", i)
		}
	}
	if tb.Len() != 4 {
		t.Errorf("Len %d, want 4", tb.Len())
	}
}

func TestStickyPurgeNodeDropsOnlyItsPins(t *testing.T) {
	tb := NewStickyTable(StickyOptions{Seed: 1})
	for i := range 300 {
		tb.Set(testAddr(i), i%3+1, 0)
	}
	if n := tb.PurgeNode(2); n != 100 {
		t.Errorf("PurgeNode(2) removed %d, want 100", n)
	}
	for i := range 300 {
		id, ok := tb.Get(testAddr(i), 1)
		if want := i%3+1 != 2; ok != want || ok && id != i%3+1 {
			t.Fatalf("pin %d after purge: %d, %v", i, id, ok)
		}
	}
	if n := tb.PurgeFunc(func(id int) bool { return id != 1 }); n != 100 || tb.Len() != 100 {
		t.Errorf("PurgeFunc removed %d, Len %d; want 100, 100", n, tb.Len())
	}
}

func TestStickySweepRemovesExpired(t *testing.T) {
	tb := NewStickyTable(StickyOptions{TTL: time.Minute, Seed: 1})
	for i := range 50 {
		tb.Set(testAddr(i), 1, int64(i)*int64(time.Second))
	}
	// Pin i was set at i s and expires at i+60 s: at 60.5 s only pin 0 has.
	if n := tb.Sweep(int64(60500 * time.Millisecond)); n != 1 {
		t.Errorf("Sweep at 60.5 s removed %d, want 1", n)
	}
	if n := tb.Sweep(int64(200 * time.Second)); n != 49 || tb.Len() != 0 {
		t.Errorf("Sweep at 200 s removed %d, Len %d; want 49, 0", n, tb.Len())
	}
}

func TestStickyChurnKeepsLookupsCorrect(t *testing.T) {
	// Many inserts and deletes fill slots with tombstones; lookups must
	// stay right and the table must keep accepting pins.
	tb := NewStickyTable(StickyOptions{MaxEntries: 64, Shards: 2, Seed: 9})
	for round := range 2000 {
		a := testAddr(round)
		tb.Set(a, round%7+1, int64(round))
		if id, ok := tb.Get(a, int64(round)); !ok || id != round%7+1 {
			t.Fatalf("round %d: just-set pin = %d, %v", round, id, ok)
		}
		if round%2 == 0 {
			tb.Delete(a)
		}
	}
	if tb.Len() > tb.Cap() {
		t.Errorf("Len %d > Cap %d", tb.Len(), tb.Cap())
	}
}

func TestStickyGetDoesNotAllocate(t *testing.T) {
	tb := NewStickyTable(StickyOptions{Seed: 1})
	a := netip.MustParseAddr("2001:db8::42")
	tb.Set(a, 1, 0)
	if n := testing.AllocsPerRun(1000, func() { tb.Get(a, 1) }); n != 0 {
		t.Errorf("Get hit allocates %v times", n)
	}
}

func TestStickyConcurrentUse(t *testing.T) {
	tb := NewStickyTable(StickyOptions{MaxEntries: 512, Shards: 8, Seed: 5})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				a := testAddr((i*7 + g) % 1000)
				now := int64(i)
				switch i % 10 {
				case 0:
					tb.Delete(a)
				case 1, 2:
					tb.Set(a, int(a.As4()[3])%9+1, now)
				case 3:
					if g == 0 && i%1000 == 3 {
						tb.PurgeNode(4)
					}
				default:
					// Whatever the interleaving, a pin names the node
					// this address was pinned to.
					if id, ok := tb.Get(a, now); ok && id != int(a.As4()[3])%9+1 {
						t.Errorf("address %v pinned to %d", a, id)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if tb.Len() > tb.Cap() {
		t.Errorf("Len %d > Cap %d", tb.Len(), tb.Cap())
	}
}
