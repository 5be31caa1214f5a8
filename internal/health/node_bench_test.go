package health

import (
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// benchNode returns a node handle with passive checks on and no goroutine
// consuming its trips, as the data plane sees it.
func benchNode(b *testing.B, passive bool) *Node {
	c := New(Options{Logger: quiet})
	return c.Set(1, Spec{Check: model.CheckNone, Passive: passive}, nodesOf(10, 1))[0]
}

// BenchmarkNodeSuccess is the cost of reporting a successful request: the
// common case on the hot path.
func BenchmarkNodeSuccess(b *testing.B) {
	n := benchNode(b, true)
	b.ReportAllocs()
	for b.Loop() {
		n.Success()
	}
}

// BenchmarkNodeFailure is the cost of reporting a failed request, including
// the trip signal once per run of failures.
func BenchmarkNodeFailure(b *testing.B) {
	n := benchNode(b, true)
	now := time.Now().UnixNano()
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		n.Failure(now + i)
	}
}

// BenchmarkNodeFailureAndSuccess alternates the two, so that every failure
// starts a new run.
func BenchmarkNodeFailureAndSuccess(b *testing.B) {
	n := benchNode(b, true)
	now := time.Now().UnixNano()
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		n.Failure(now + i)
		n.Success()
	}
}

// BenchmarkNodeFailurePassiveOff is a report to a node without passive checks.
func BenchmarkNodeFailurePassiveOff(b *testing.B) {
	n := benchNode(b, false)
	b.ReportAllocs()
	for b.Loop() {
		n.Failure(1)
	}
}

// BenchmarkNodeSuccessParallel reports successes to one node from every
// core, as concurrent connections to one backend do.
func BenchmarkNodeSuccessParallel(b *testing.B) {
	n := benchNode(b, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Success()
		}
	})
}

// BenchmarkNodeFailureParallel reports failures to one node from every core.
func BenchmarkNodeFailureParallel(b *testing.B) {
	n := benchNode(b, true)
	now := time.Now().UnixNano()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Failure(now)
		}
	})
}
