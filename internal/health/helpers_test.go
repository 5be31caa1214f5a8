package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// quiet is a logger for tests.
var quiet = slog.New(slog.DiscardHandler)

// fakeNodes stands in for the network in tests run inside a synctest
// bubble: each node answers checks as the test says, after a latency.
type fakeNodes struct {
	mu                    sync.Mutex
	failing               map[int]bool          // node ID → checks fail (by timing out)
	latency               map[int]time.Duration // node ID → how long a passing check takes
	starts                map[int][]time.Time   // node ID → start of every check
	inFlight, maxInFlight map[int]int
}

func newFakeNodes() *fakeNodes {
	return &fakeNodes{
		failing: map[int]bool{}, latency: map[int]time.Duration{}, starts: map[int][]time.Time{},
		inFlight: map[int]int{}, maxInFlight: map[int]int{},
	}
}

func (f *fakeNodes) setFailing(id int, failing bool) {
	f.mu.Lock()
	f.failing[id] = failing
	f.mu.Unlock()
}

func (f *fakeNodes) setLatency(id int, d time.Duration) {
	f.mu.Lock()
	f.latency[id] = d
	f.mu.Unlock()
}

// checks returns the start times of node id's checks so far.
func (f *fakeNodes) checks(id int) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.starts[id]...)
}

func (f *fakeNodes) maxConcurrent(id int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInFlight[id]
}

var errFakeTimeout = errors.New("fake timeout")

// probe is a prober: a failing node times out (the worst case for
// detection); a healthy one answers after its latency, or times out if that
// exceeds the check timeout.
func (f *fakeNodes) probe(ctx context.Context, n *Node, cs *checkSpec) error {
	f.mu.Lock()
	f.starts[n.id] = append(f.starts[n.id], time.Now())
	f.inFlight[n.id]++
	f.maxInFlight[n.id] = max(f.maxInFlight[n.id], f.inFlight[n.id])
	failing, lat := f.failing[n.id], f.latency[n.id]
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight[n.id]--
		f.mu.Unlock()
	}()
	if failing || lat >= cs.Timeout {
		lat = cs.Timeout
	}
	t := time.NewTimer(lat)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if failing || lat >= cs.Timeout {
		return errFakeTimeout
	}
	return nil
}

// obsEvent is what the recording observer saw.
type obsEvent struct {
	at       time.Time
	nodeID   int
	check    bool // a CheckDone; otherwise a StatusChanged
	err      error
	from, to model.NodeStatus
}

// recorder is an Observer that keeps every event in order.
type recorder struct {
	mu     sync.Mutex
	events []obsEvent
	cursor map[int]int   // node ID → events already consumed by waitStatus
	signal chan struct{} // a status changed
}

func newRecorder() *recorder {
	return &recorder{cursor: map[int]int{}, signal: make(chan struct{}, 1)}
}

func (r *recorder) CheckDone(_, nodeID int, _ time.Duration, err error) {
	r.mu.Lock()
	r.events = append(r.events, obsEvent{at: time.Now(), nodeID: nodeID, check: true, err: err})
	r.mu.Unlock()
}

func (r *recorder) StatusChanged(_, nodeID int, from, to model.NodeStatus) {
	r.mu.Lock()
	r.events = append(r.events, obsEvent{at: time.Now(), nodeID: nodeID, from: from, to: to})
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// snapshot returns every event so far.
func (r *recorder) snapshot() []obsEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]obsEvent(nil), r.events...)
}

// next returns node id's first status change to want that no earlier
// waitStatus consumed, and consumes it.
func (r *recorder) next(id int, want model.NodeStatus) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := r.cursor[id]; i < len(r.events); i++ {
		if e := r.events[i]; !e.check && e.nodeID == id && e.to == want {
			r.cursor[id] = i + 1
			return e.at, true
		}
	}
	return time.Time{}, false
}

// waitStatus waits (in fake time, inside a bubble) for node id's next
// change to want and returns when it happened, failing the test after limit.
func (r *recorder) waitStatus(t *testing.T, id int, want model.NodeStatus, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		if at, ok := r.next(id, want); ok {
			return at
		}
		select {
		case <-r.signal:
		case <-deadline.C:
			if at, ok := r.next(id, want); ok {
				return at
			}
			t.Fatalf("node %d not %s within %v", id, want, limit)
		}
	}
}

// harness is a Checker on fake nodes, running in the current bubble.
type harness struct {
	c      *Checker
	fake   *fakeNodes
	rec    *recorder
	cancel context.CancelFunc
	done   chan error

	changedMu sync.Mutex
	changed   map[int]int // config ID → OnChange calls
}

func newHarness(t *testing.T, o Options) *harness {
	h := &harness{fake: newFakeNodes(), rec: newRecorder(), changed: map[int]int{}}
	o.Logger = quiet
	o.Observer = h.rec
	o.OnChange = func(id int) {
		h.changedMu.Lock()
		h.changed[id]++
		h.changedMu.Unlock()
	}
	h.c = New(o)
	h.c.probeFn = h.fake.probe
	h.c.noEngine = true
	t.Cleanup(func() { // a failed test still ends its goroutines inside the bubble
		if h.cancel != nil {
			h.cancel()
			<-h.done
		}
	})
	return h
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.c.Run(ctx) }()
}

// stop ends Run and checks that it returns.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func (h *harness) onChanges(id int) int {
	h.changedMu.Lock()
	defer h.changedMu.Unlock()
	return h.changed[id]
}

// nodesOf returns n accept nodes with IDs first, first+1, … on loopback.
func nodesOf(first, n int) []model.Node {
	out := make([]model.Node, n)
	for i := range out {
		out[i] = model.Node{ID: first + i, Address: fmt.Sprintf("127.0.9.%d:80", 1+(first+i)%250), Mode: model.ModeAccept}
	}
	return out
}

// spec1s is an http check every second with a 500 ms timeout.
func spec1s(attempts int) Spec {
	return Spec{Check: model.CheckHTTP, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: attempts, Passive: true}
}

// inFlight reports whether a check of node id is running.
func (f *fakeNodes) inFlightNow(id int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight[id] > 0
}

// waitInFlight sleeps in small steps of fake time until a check of node id
// is running.
func waitInFlight(t *testing.T, f *fakeNodes, id int) {
	t.Helper()
	for range 10000 {
		if f.inFlightNow(id) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no check of node %d started", id)
}

// nowNanos is the clock the tests pass to Failure.
func nowNanos() int64 { return time.Now().UnixNano() }
