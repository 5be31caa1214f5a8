package ha

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nodebalancer/nodebalancer/internal/etcdtest"
)

// The election alone, on a real (embedded) etcd and without addresses, so without
// root: the interface is lo and nothing is added to it.
type candidate struct {
	h      *Holder
	cli    *clientv3.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	held, freed time.Time // when Holding() was first seen true, then false again
}

func startCandidate(t *testing.T, endpoints []string, id string) *candidate {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Client: cli, Prefix: "/t/", HostID: id, Interface: "lo",
		Addresses: func() []netip.Addr { return nil }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{h: h, cli: cli, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(c.done); h.Run(ctx) }()
	wctx, stopWatch := context.WithCancel(context.Background())
	go func() { // watch Holding() every millisecond, past the stop
		was := false
		for wctx.Err() == nil {
			now := h.Holding()
			c.mu.Lock()
			if now && !was && c.held.IsZero() {
				c.held = time.Now()
			}
			if !now && was && c.freed.IsZero() {
				c.freed = time.Now()
			}
			c.mu.Unlock()
			was = now
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(func() { c.stop(); stopWatch(); cli.Close() })
	return c
}

func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

func (c *candidate) times() (held, freed time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held, c.freed
}

func waitHeld(t *testing.T, c *candidate, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if h, _ := c.times(); !h.IsZero() {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("not holding within %s", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// One host holds, the next waits without taking over, and a stop hands over at once.
func TestElectionHandsOverOnStopAndNeverSteals(t *testing.T) {
	ec := etcdtest.Start(t, 1, "127.0.0.1")
	a := startCandidate(t, ec.Endpoints(), "a")
	waitHeld(t, a, 5*time.Second)
	b := startCandidate(t, ec.Endpoints(), "b")
	time.Sleep(3 * time.Second) // more than a lease: b must not take over a live holder
	if h, _ := b.times(); !h.IsZero() || !a.h.Holding() {
		t.Fatalf("b took over from a live holder (a holding %v)", a.h.Holding())
	}
	if cur, err := b.h.Current(context.Background()); err != nil || cur != "a" {
		t.Fatalf("Current: %q %v", cur, err)
	}
	// Never both: b's Holding is read before a's, so b's true and then a's true means
	// both held at the moment a's was read. (The watchers' times are sampled each
	// millisecond and cannot order two changes microseconds apart.)
	overlap := make(chan bool, 1)
	go func() {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if b.h.Holding() {
				overlap <- a.h.Holding()
				return
			}
			runtime.Gosched()
		}
		overlap <- false
	}()
	t0 := time.Now()
	a.stop()
	held := waitHeld(t, b, 2*time.Second)
	if <-overlap {
		t.Fatal("b held while a still did: want the release first")
	}
	time.Sleep(10 * time.Millisecond)
	_, freed := a.times()
	t.Logf("stop: a released after %s, b held after %s (as sampled each millisecond)", freed.Sub(t0), held.Sub(t0))
	if freed.IsZero() {
		t.Fatal("a never released")
	}
	if held.Sub(t0) > 500*time.Millisecond {
		t.Errorf("b held %s after a's stop; a stop revokes the lease, so it should take milliseconds", held.Sub(t0))
	}
}

// A holder cut off from etcd (here: its client closed) lets go before its lease can
// lapse, so before anyone else can hold: the timing argument of docs/ha.md.
func TestElectionCutOffHolderLetsGoFirst(t *testing.T) {
	ec := etcdtest.Start(t, 1, "127.0.0.1")
	a := startCandidate(t, ec.Endpoints(), "a")
	waitHeld(t, a, 5*time.Second)
	b := startCandidate(t, ec.Endpoints(), "b")
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	a.cli.Close()
	held := waitHeld(t, b, 5*time.Second)
	_, freed := a.times()
	t.Logf("cut off: a let go after %s, b held after %s", freed.Sub(t0), held.Sub(t0))
	if freed.IsZero() || !freed.Before(held) {
		t.Fatalf("a let go at %v, b held at %v: two holders at once", freed, held)
	}
	// a lets go Margin before its lease can lapse: at most TTL - Margin after its
	// last renewal, which was less than Renew before the cut.
	if d := freed.Sub(t0); d > DefaultTTL-DefaultMargin+250*time.Millisecond { // slack for a loaded machine
		t.Errorf("a let go %s after the cut; want within TTL - margin = %s", d, DefaultTTL-DefaultMargin)
	}
	if gap := held.Sub(freed); gap < DefaultMargin-100*time.Millisecond {
		t.Errorf("b held only %s after a let go; want about the margin (%s) or more", gap, DefaultMargin)
	}
}
