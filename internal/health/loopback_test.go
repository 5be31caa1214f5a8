package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// These tests check real nodes on loopback in real time; each backend has
// its own 127.0.41.x address. Checks run every second with a 500 ms
// timeout, so each test takes a few seconds; they run in parallel.

// slack absorbs goroutine and network latency on a busy machine.
const slack = 300 * time.Millisecond

// backend is an HTTP node whose answers a test controls.
type backend struct {
	*httptest.Server
	addr     string
	code     atomic.Int32
	body     atomic.Pointer[string]
	delay    atomic.Int64 // nanoseconds to wait before answering
	requests atomic.Int64

	mu          sync.Mutex
	last        *http.Request
	arrivals    []time.Time
	inFlight    int
	maxInFlight int
}

func newBackend(t *testing.T, ip string) *backend {
	t.Helper()
	b := &backend{}
	b.code.Store(http.StatusOK)
	empty := "ok"
	b.body.Store(&empty)
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.Listener.Close()
	b.Listener = l
	b.Start()
	t.Cleanup(b.Close)
	b.addr = l.Addr().String()
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	b.mu.Lock()
	b.last = r
	b.arrivals = append(b.arrivals, time.Now())
	b.inFlight++
	b.maxInFlight = max(b.maxInFlight, b.inFlight)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
	}()
	if d := time.Duration(b.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(int(b.code.Load()))
	fmt.Fprint(w, *b.body.Load())
}

func (b *backend) setBody(s string) { b.body.Store(&s) }

func (b *backend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// runChecker starts a real Checker until the test ends.
func runChecker(t *testing.T, o Options) *Checker {
	t.Helper()
	o.Logger = quiet
	c := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

// waitStatus polls until node id has status want and returns how long that
// took, failing the test after limit.
func waitStatus(t *testing.T, c *Checker, id int, want model.NodeStatus, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if c.Status(id) == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("node %d is %s, not %s, after %v", id, c.Status(id), want, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func node(id int, addr string) model.Node {
	return model.Node{ID: id, Address: addr, Mode: model.ModeAccept}
}

// downBound is how soon a failing node must be DOWN.
func downBound(s Spec) time.Duration {
	return time.Duration(s.Attempts)*s.Interval + s.Timeout + jitterMax(s.Interval, s.Timeout) + slack
}

// upBound is how soon a recovered node must be UP: the next check.
func upBound(s Spec) time.Duration {
	return s.Interval + jitterMax(s.Interval, s.Timeout) + slack
}

func TestHTTPCheckFollowsBackendStatus(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "127.0.41.1")
	c := runChecker(t, Options{})
	spec := Spec{Check: model.CheckHTTP, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: 2, Path: "/health?deep=1"}
	c.Set(1, spec, []model.Node{node(1, b.addr)})
	waitStatus(t, c, 1, model.StatusUp, initialDelayMax(spec.Interval)+slack)

	r := b.lastRequest()
	switch {
	case r.Method != http.MethodGet || r.URL.RequestURI() != "/health?deep=1":
		t.Errorf("request %s %s, want GET /health?deep=1", r.Method, r.URL.RequestURI())
	case r.Host != b.addr:
		t.Errorf("Host %q, want the node address %q", r.Host, b.addr)
	case !r.Close:
		t.Error("check request without Connection: close")
	case r.ProtoMajor != 1 || r.ProtoMinor != 1:
		t.Errorf("protocol %s, want HTTP/1.1", r.Proto)
	case !strings.Contains(r.UserAgent(), "nodebalancer"):
		t.Errorf("User-Agent %q does not name nodebalancer", r.UserAgent())
	}

	b.code.Store(http.StatusInternalServerError)
	d := waitStatus(t, c, 1, model.StatusDown, downBound(spec))
	t.Logf("500: DOWN after %v (bound %v)", d, downBound(spec))
	b.code.Store(http.StatusOK)
	d = waitStatus(t, c, 1, model.StatusUp, upBound(spec))
	t.Logf("200: UP after %v (bound %v)", d, upBound(spec))
}

func TestHTTPBodyCheckFollowsBody(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "127.0.41.2")
	b.setBody(`{"status": "ok", "db": "up"}`)
	c := runChecker(t, Options{})
	spec := Spec{Check: model.CheckHTTPBody, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: 1, Body: `"status":\s*"ok"`}
	c.Set(1, spec, []model.Node{node(1, b.addr)})
	waitStatus(t, c, 1, model.StatusUp, initialDelayMax(spec.Interval)+slack)

	b.setBody(`{"status": "degraded", "db": "down"}`) // still 200
	d := waitStatus(t, c, 1, model.StatusDown, downBound(spec))
	t.Logf("mismatch: DOWN after %v", d)
	if st := c.Lookup(1).Stats(); !strings.Contains(st.LastError, "check_body") {
		t.Errorf("last error %q does not name check_body", st.LastError)
	}
	b.setBody(`{"status":"ok"}`)
	waitStatus(t, c, 1, model.StatusUp, upBound(spec))
}

func TestConnectionCheckDetectsClosedListener(t *testing.T) {
	t.Parallel()
	listen := func(addr string) net.Listener {
		return testnet.ServeConns(t, addr, func(net.Conn) {})
	}
	l := listen("127.0.41.3:0")
	addr := l.Addr().String()
	c := runChecker(t, Options{})
	spec := Spec{Check: model.CheckConnection, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: 2}
	c.Set(1, spec, []model.Node{node(1, addr)})
	waitStatus(t, c, 1, model.StatusUp, initialDelayMax(spec.Interval)+slack)

	l.Close()
	d := waitStatus(t, c, 1, model.StatusDown, downBound(spec))
	t.Logf("listener closed: DOWN after %v", d)
	l = listen(addr)
	defer l.Close()
	waitStatus(t, c, 1, model.StatusUp, upBound(spec))
}

func TestRejectSendsNoCheckTraffic(t *testing.T) {
	t.Parallel()
	was := newBackend(t, "127.0.41.4")    // accept, then reject
	always := newBackend(t, "127.0.41.5") // reject from the start
	c := runChecker(t, Options{})
	spec := Spec{Check: model.CheckHTTP, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: 2}
	nodes := []model.Node{node(1, was.addr), node(2, always.addr)}
	nodes[1].Mode = model.ModeReject
	c.Set(1, spec, nodes)
	waitStatus(t, c, 1, model.StatusUp, initialDelayMax(spec.Interval)+slack)

	nodes[0].Mode = model.ModeReject
	c.Set(1, spec, nodes)
	if got := c.Status(1); got != model.StatusDown {
		t.Fatalf("reject: status %s, want DOWN", got)
	}
	time.Sleep(100 * time.Millisecond) // a check cancelled by the change may still land
	before := was.requests.Load()
	time.Sleep(2500 * time.Millisecond)
	if got := was.requests.Load() - before; got != 0 {
		t.Errorf("%d check requests reached a reject node", got)
	}
	if got := always.requests.Load(); got != 0 {
		t.Errorf("%d check requests reached a node in reject mode from the start", got)
	}
	if c.Status(2) != model.StatusDown {
		t.Errorf("reject node: status %s, want DOWN", c.Status(2))
	}
}

func TestChecksOfManyNodesAreSpread(t *testing.T) {
	t.Parallel()
	const n = 20
	b := newBackend(t, "127.0.41.6")
	c := runChecker(t, Options{})
	spec := Spec{Check: model.CheckHTTP, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: 2}
	nodes := make([]model.Node, n)
	for i := range nodes {
		nodes[i] = node(100+i, b.addr) // one backend, n node entries
	}
	c.Set(1, spec, nodes)
	for i := range n {
		waitStatus(t, c, 100+i, model.StatusUp, initialDelayMax(spec.Interval)+slack)
	}
	b.mu.Lock()
	first := append([]time.Time(nil), b.arrivals[:n]...)
	b.mu.Unlock()
	ms := map[int64]bool{}
	for _, a := range first {
		ms[a.UnixMilli()] = true
	}
	span := first[n-1].Sub(first[0])
	t.Logf("first %d checks: %d distinct milliseconds over %v", n, len(ms), span)
	if len(ms) < n/2 || span < 100*time.Millisecond {
		t.Fatalf("first checks of %d nodes fell in %d milliseconds over %v: not spread", n, len(ms), span)
	}
}

func TestSlowNodeChecksNeverOverlap(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "127.0.41.7")
	b.delay.Store(int64(700 * time.Millisecond))
	c := runChecker(t, Options{})
	// A timeout above the interval (the API refuses it; Spec allows it)
	// makes every check outlast the interval.
	spec := Spec{Check: model.CheckHTTP, Interval: 500 * time.Millisecond, Timeout: time.Second, Attempts: 2}
	c.Set(1, spec, []model.Node{node(1, b.addr)})
	time.Sleep(3 * time.Second)
	b.mu.Lock()
	maxIn, arrivals := b.maxInFlight, append([]time.Time(nil), b.arrivals...)
	b.mu.Unlock()
	t.Logf("%d checks in 3 s of a node answering in 700 ms", len(arrivals))
	if maxIn != 1 {
		t.Fatalf("%d checks of one node in flight at once", maxIn)
	}
	for i := 1; i < len(arrivals); i++ {
		if gap := arrivals[i].Sub(arrivals[i-1]); gap < 700*time.Millisecond {
			t.Fatalf("check %d arrived %v after the previous one, which took 700 ms", i, gap)
		}
	}
	if len(arrivals) < 3 {
		t.Fatalf("only %d checks in 3 s", len(arrivals))
	}
	if got := c.Status(1); got != model.StatusUp {
		t.Fatalf("slow but passing node: status %s", got)
	}
}

// probeOnce runs one check of addr directly, without a schedule.
func probeOnce(c *Checker, addr string, spec Spec) error {
	ap, err := netip.ParseAddrPort(addr)
	n := &Node{addr: ap, addrOK: err == nil}
	return c.probe(context.Background(), n, newCheckSpec(spec, nil))
}

func TestHTTPCheckStatusCodes(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "127.0.41.8")
	c := New(Options{Logger: quiet})
	spec := Spec{Check: model.CheckHTTP, Interval: time.Second, Timeout: 500 * time.Millisecond, Attempts: 1}
	for _, tc := range []struct {
		code int
		pass bool
	}{
		{200, true}, {204, true}, {301, true}, {302, true}, {304, true}, {399, true},
		{400, false}, {404, false}, {500, false}, {501, false}, {503, false}, {505, false},
	} {
		b.code.Store(int32(tc.code))
		err := probeOnce(c, b.addr, spec)
		if (err == nil) != tc.pass {
			t.Errorf("status %d: check error %v, want pass=%v", tc.code, err, tc.pass)
		}
	}
}

func TestHTTPCheckDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	l, err := net.Listen("tcp", "127.0.41.9:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			hits.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := New(Options{Logger: quiet})
	if err := probeOnce(c, l.Addr().String(), Spec{Check: model.CheckHTTP, Timeout: 500 * time.Millisecond}); err != nil {
		t.Fatalf("302: %v", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the check followed the redirect")
	}
}

func TestHTTPBodyCheckMatchesOnlyTheFirstMaxBodyBytes(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "127.0.41.10")
	c := New(Options{Logger: quiet, MaxBodyBytes: 1024})
	spec := Spec{Check: model.CheckHTTPBody, Timeout: 500 * time.Millisecond, Body: "MARK"}
	pad := strings.Repeat("a", 2000)
	for _, tc := range []struct {
		body string
		pass bool
	}{
		{"MARK" + pad, true},
		{pad[:1020] + "MARK" + pad, true},
		{pad[:1021] + "MARK" + pad, false},
		{pad + "MARK", false},
		{"", false},
	} {
		b.setBody(tc.body)
		if err := probeOnce(c, b.addr, spec); (err == nil) != tc.pass {
			t.Errorf("MARK at %d of %d bytes: error %v, want pass=%v", strings.Index(tc.body, "MARK"), len(tc.body), err, tc.pass)
		}
	}
	// A body expression that does not compile (the API refuses it) fails the
	// check rather than passing it.
	spec.Body = "("
	if err := probeOnce(c, b.addr, spec); err == nil {
		t.Error("an invalid check_body passed")
	}
}

func TestChecksFailOnTimeoutAndBadAddress(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "127.0.41.11")
	b.delay.Store(int64(2 * time.Second))
	c := New(Options{Logger: quiet})
	start := time.Now()
	err := probeOnce(c, b.addr, Spec{Check: model.CheckHTTP, Timeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow node: error %v, want a timeout", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond+slack {
		t.Fatalf("timed-out check took %v", d)
	}
	for _, check := range []model.Check{model.CheckConnection, model.CheckHTTP} {
		if err := probeOnce(c, "not-an-address", Spec{Check: check, Timeout: time.Second}); !errors.Is(err, errBadAddress) {
			t.Errorf("%s check of a bad address: %v", check, err)
		}
	}
	// A port nobody listens on: connection refused.
	l, _ := net.Listen("tcp", "127.0.41.11:0")
	closed := l.Addr().String()
	l.Close()
	if err := probeOnce(c, closed, Spec{Check: model.CheckConnection, Timeout: time.Second}); err == nil {
		t.Error("connection check of a closed port passed")
	}
}

func TestChecksUseTheSourceAddress(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "127.0.41.12")
	src := netip.MustParseAddr("127.0.41.99")
	c := New(Options{Logger: quiet, Source: src})
	if err := probeOnce(c, b.addr, Spec{Check: model.CheckHTTP, Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(b.lastRequest().RemoteAddr)
	if host != src.String() {
		t.Fatalf("check came from %s, want %s", host, src)
	}

	l, err := net.Listen("tcp", "127.0.41.12:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	from := make(chan string, 1)
	go func() {
		if conn, err := l.Accept(); err == nil {
			from <- conn.RemoteAddr().String()
			conn.Close()
		}
	}()
	if err := probeOnce(c, l.Addr().String(), Spec{Check: model.CheckConnection, Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := <-from; !strings.HasPrefix(got, src.String()+":") {
		t.Fatalf("connection check came from %s, want %s", got, src)
	}
}
