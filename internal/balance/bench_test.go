package balance

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchPool returns a pool of n accept nodes, all UP, with weights spread
// over 1..255 so that round robin's cycle is long.
func benchPool(b *testing.B, algo Algorithm, n int) *Pool {
	specs := make([]spec, n)
	for i := range specs {
		specs[i] = spec{id: i + 1, weight: (i*37)%MaxWeight + 1, status: StatusUp}
	}
	return newTestPool(b, algo, specs...)
}

func BenchmarkPick(b *testing.B) {
	for _, algo := range algorithms {
		for _, n := range []int{3, 100, 1000} {
			b.Run(fmt.Sprintf("%v/nodes=%d", algo, n), func(b *testing.B) {
				p := benchPool(b, algo, n)
				b.ReportAllocs()
				key := uint64(0)
				for b.Loop() {
					key += 0x9e3779b97f4a7c15
					if p.Pick(key) == nil {
						b.Fatal("nil pick")
					}
				}
			})
		}
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, algo := range algorithms {
		b.Run(fmt.Sprintf("%v/nodes=100", algo), func(b *testing.B) {
			p := benchPool(b, algo, 100)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := uint64(0)
				for pb.Next() {
					key += 0x9e3779b97f4a7c15
					if p.Pick(key) == nil {
						b.Error("nil pick")
						return
					}
				}
			})
		})
	}
}

// BenchmarkLeastConnPickAcquireRelease is leastconn as the data plane uses
// it: every pick counts a connection and a later release uncounts it, so the
// scan reads counters other goroutines are writing.
func BenchmarkLeastConnPickAcquireRelease(b *testing.B) {
	p := benchPool(b, LeastConn, 100)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := p.Pick(0)
			n.State.Acquire()
			n.State.Release()
		}
	})
}

func BenchmarkHashAddr(b *testing.B) {
	a := netip.MustParseAddr("2001:db8::1234")
	b.ReportAllocs()
	var sink uint64
	for b.Loop() {
		sink += HashAddr(a)
	}
	_ = sink
}

// BenchmarkChooseSticky is one new connection of a table-sticky config whose
// client is already pinned: hash, table hit, Honour.
func BenchmarkChooseSticky(b *testing.B) {
	p := benchPool(b, RoundRobin, 100)
	tb := NewStickyTable(StickyOptions{})
	const clients = 4096
	for i := range clients {
		tb.Set(testAddr(i), i%100+1, 0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			a := testAddr(i % clients)
			i++
			id, _ := tb.Get(a, 1)
			if n, repin := p.Choose(HashAddr(a), id); n == nil || repin {
				b.Error("pin not honoured")
				return
			}
		}
	})
}

func BenchmarkStickyGet(b *testing.B) {
	tb := NewStickyTable(StickyOptions{})
	const clients = 4096
	for i := range clients {
		tb.Set(testAddr(i), 1, 0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := tb.Get(testAddr(i%clients), 1); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkStickySetNew(b *testing.B) {
	tb := NewStickyTable(StickyOptions{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.Set(testAddr(i), 1, int64(i))
		i++
	}
}

func BenchmarkRefreshUnchanged(b *testing.B) {
	p := benchPool(b, Source, 100)
	b.ReportAllocs()
	for b.Loop() {
		if p.Refresh() {
			b.Fatal("rebuilt")
		}
	}
}

// BenchmarkRebuild measures a Refresh that follows a status change: the
// cost the health checker pays, off the hot path.
func BenchmarkRebuild(b *testing.B) {
	for _, algo := range algorithms {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%v/nodes=%d", algo, n), func(b *testing.B) {
				p := benchPool(b, algo, n)
				st := p.Node(0).State
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i%2 == 0 { // DOWN, UP, DOWN...
						st.SetStatus(StatusDown)
					} else {
						st.SetStatus(StatusUp)
					}
					i++
					if !p.Refresh() {
						b.Fatal("no rebuild")
					}
				}
			})
		}
	}
}
