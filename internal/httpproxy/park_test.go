package httpproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Parking (park.go): an idle keep-alive connection on plain TCP waits for its next
// request without a goroutine. startProxy serves through ServeConnAsync, so every raw
// test in this package runs with parking; these test parking itself.

// countParks counts connections parking from now until the test ends. When also is
// set it runs first, on the parking connection's goroutine.
func countParks(t *testing.T, also func(*parkConn)) *atomic.Int64 {
	t.Helper()
	if !parkSupported {
		t.Skip("parking needs Linux")
	}
	var n atomic.Int64
	h := func(pc *parkConn) {
		if also != nil {
			also(pc)
		}
		n.Add(1)
	}
	testParkHook.Store(&h)
	t.Cleanup(func() { testParkHook.Store(nil) })
	return &n
}

// waitParks waits until n reaches want.
func waitParks(t *testing.T, n *atomic.Int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", n.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The hook runs just before the state changes.
	time.Sleep(20 * time.Millisecond)
}

func pathBackend(t *testing.T) *testRouter {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	return &testRouter{backends: []*Backend{backendFor(be, "a")}}
}

// A parked connection's next request is served (by a goroutine the poller starts),
// again and again.
func TestParkedConnectionIsServedAgain(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t)})
	rc := dialProxy(t, p)
	for i := range 4 {
		path := fmt.Sprintf("/r%d", i)
		rc.send("GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n")
		if got := body(t, rc.response("GET")); got != path {
			t.Fatalf("request %d: got %q", i, got)
		}
		waitParks(t, parks, int64(i+1))
	}
}

// A request that arrives after the connection's last read but before it is parked
// is not lost: the poller sees it while the connection is still active and the
// connection reads again instead of parking.
func TestRequestArrivingWhileParkingIsServed(t *testing.T) {
	var rc *rawClient
	var once sync.Once
	parks := countParks(t, func(pc *parkConn) {
		if !pc.begun {
			return // before the first request
		}
		once.Do(func() {
			// On the server's goroutine, after its last read: the next request
			// arrives now, and the poller sees it before the state changes.
			rc.c.Write([]byte("GET /raced HTTP/1.1\r\nHost: h\r\n\r\n"))
			time.Sleep(100 * time.Millisecond)
		})
	})
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: time.Minute}})
	rc = dialProxy(t, p)
	rc.send("GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
	if got := body(t, rc.response("GET")); got != "/first" {
		t.Fatalf("got %q", got)
	}
	rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if got := body(t, rc.response("GET")); got != "/raced" {
		t.Fatalf("got %q", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the raced request took %v", d)
	}
	waitParks(t, parks, 2) // at least the raced attempt, and the one after the second request
}

// Many clients sending each request the moment the previous response arrives (racing
// the proxy's parking), some of them pipelined in pairs: every request is answered.
// No connection becomes hot here, so that each parks after each request.
func TestParkRaceStress(t *testing.T) {
	testNoHot.Store(true)
	t.Cleanup(func() { testNoHot.Store(false) })
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: time.Minute}})
	const clients, requests = 24, 150
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- stressClient(p.addr, c, requests, nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if parks.Load() == 0 {
		t.Error("no connection parked")
	}
	t.Logf("%d parks for %d requests", parks.Load(), clients*requests)
}

// stressClient sends requests on one connection, each the moment the previous response
// arrived or, when gap is set, gap(i) after it, some of them pipelined in pairs, and
// checks every answer.
func stressClient(addr string, c, requests int, gap func(i int) time.Duration) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; i < requests; {
		n := 1
		if (c+i)%7 == 0 {
			n = 2 // pipelined pair
		}
		if gap != nil {
			time.Sleep(gap(i))
		}
		var b strings.Builder
		for k := range n {
			fmt.Fprintf(&b, "GET /c%d-%d HTTP/1.1\r\nHost: h\r\n\r\n", c, i+k)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(b.String())); err != nil {
			return err
		}
		for k := range n {
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				return fmt.Errorf("client %d request %d: %v", c, i+k, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("/c%d-%d", c, i+k); string(got) != want {
				return fmt.Errorf("client %d: got %q, want %q", c, got, want)
			}
		}
		i += n
	}
	return nil
}

// Pipelined requests are all answered before the connection parks, and it serves
// pipelined requests again after.
func TestParkPipelined(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t)})
	rc := dialProxy(t, p)
	for round := range 2 {
		rc.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n")
		for _, want := range []string{"/a", "/b", "/c"} {
			if got := body(t, rc.response("GET")); got != want {
				t.Fatalf("round %d: got %q, want %q", round, got, want)
			}
		}
		waitParks(t, parks, int64(round+1))
	}
}

// The keep-alive idle timeout closes a parked connection (silently), and the
// caller's done runs.
func TestParkedIdleTimeout(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: 300 * time.Millisecond}})
	rc := dialProxy(t, p)
	rc.send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
	body(t, rc.response("GET"))
	took, got := closedWithin(t, rc, 5*time.Second)
	if got != "" {
		t.Errorf("an idle connection was sent %q", got)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("closed after %v, want the 300ms idle timeout (swept every %v)", took, parkSweep)
	}
	if n := parks.Load(); n < 1 || n > 2 {
		t.Errorf("%d parks, want 1 or 2 (after the request, and before it when it came late)", n)
	}
}

// A graceful stop closes parked connections at once (not at the next sweep or the
// idle timeout) and every done runs.
func TestStopClosesParkedAtOnce(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: time.Minute}})
	var rcs []*rawClient
	for range 5 {
		rc := dialProxy(t, p)
		rc.send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		body(t, rc.response("GET"))
		rcs = append(rcs, rc)
	}
	waitParks(t, parks, 5)
	p.cancel()
	for _, rc := range rcs {
		if took, _ := closedWithin(t, rc, 5*time.Second); took > 2*time.Second {
			t.Errorf("a parked connection closed %v after the stop", took)
		}
	}
}

// Parked connections hold no goroutine; with parking off each holds one.
func TestParkedConnectionsHoldNoGoroutine(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint("parking=", on), func(t *testing.T) {
			parks := countParks(t, nil)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			srv := NewServer(&Config{Router: &testRouter{}}, nil) // 503, keep-alive
			srv.SetParking(on)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					wg.Add(1)
					go srv.ServeConnAsync(ctx, c, netip.AddrPort{}, wg.Done)
				}
			}()
			defer func() { cancel(); wg.Wait() }()
			before := runtime.NumGoroutine()
			const n = 200
			for range n {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
				if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
					t.Fatal(err)
				}
			}
			if on {
				waitParks(t, parks, n)
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			grown := runtime.NumGoroutine() - before
			t.Logf("%d goroutines more for %d idle connections", grown, n)
			switch {
			case on && grown > 10:
				t.Errorf("%d goroutines for %d parked connections", grown, n)
			case !on && grown < n*9/10:
				t.Errorf("parking off: %d goroutines for %d idle connections", grown, n)
			case !on && parks.Load() != 0:
				t.Errorf("parking off, yet %d parks", parks.Load())
			}
		})
	}
}

// A parked connection resumed after the deadline of its first wait (the header
// timeout, set on the socket before the first request) is still served: parking
// leaves no stale read deadline behind.
func TestParkedOutlivesFirstDeadline(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientHeader: 150 * time.Millisecond, ClientIdle: time.Minute}})
	rc := dialProxy(t, p)
	for i := range 6 {
		rc.send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		if got := body(t, rc.response("GET")); got != "/x" {
			t.Fatalf("request %d: got %q", i, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if parks.Load() < 5 {
		t.Errorf("%d parks", parks.Load())
	}
}

// Woken connections wait for a worker when maxWorkers are busy; when every worker is
// held up (a slow backend), a poller adds workers, so a request to a fast backend is
// not kept waiting for the slow ones.
func TestParkedRequestNotHeldUpBySlowOnes(t *testing.T) {
	parks := countParks(t, nil)
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	defer free()
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		io.WriteString(w, r.URL.Path)
	}))
	p := startProxy(t, &Config{Router: &testRouter{backends: []*Backend{backendFor(be, "a")}}})

	idle := holdWorkers(t) // no new workers but the stall's

	// Every connection parks once, so that its next request goes through a worker.
	n := int(idle) + 3
	var rcs []*rawClient
	for i := range n + 1 {
		rc := dialProxy(t, p)
		rc.send("GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
		body(t, rc.response("GET"))
		rcs = append(rcs, rc)
		waitParks(t, parks, int64(i+1))
	}
	for _, rc := range rcs[:n] {
		rc.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	time.Sleep(100 * time.Millisecond)
	fast := rcs[n]
	start := time.Now()
	fast.send("GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
	if got := body(t, fast.response("GET")); got != "/fast" {
		t.Fatalf("got %q", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a request waited %v behind slow ones", d)
	}
	free()
	for _, rc := range rcs[:n] {
		if got := body(t, rc.response("GET")); got != "/slow" {
			t.Fatalf("got %q", got)
		}
	}
}

// A new connection's wait for its first request is timed from now, not from the last
// response of the connection whose recycled state it took: a stale start closed it
// at the next sweep.
func TestFirstWaitNotTimedFromRecycledState(t *testing.T) {
	countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientHeader: time.Second, ClientIdle: time.Minute}})
	for i := range 2 {
		a := dialProxy(t, p)
		// Ended right after its response: its state goes back to the pool with the
		// time of that response.
		a.send("GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		body(t, a.response("GET"))
		a.c.Close()
		time.Sleep(1100 * time.Millisecond) // a's last response is now older than the header timeout
		b := dialProxy(t, p)
		time.Sleep(600 * time.Millisecond) // within b's header timeout, past a sweep
		b.send("GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
		b.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if got := body(t, b.response("GET")); got != "/b" {
			t.Fatalf("round %d: got %q", i, got)
		}
	}
}

// The worker queue has one producer (the poller) and many consumers (its workers):
// every connection pushed is taken exactly once, while the ring grows under the
// consumers.
func TestWorkerQueueTakesEachOnce(t *testing.T) {
	w := newWorkerPool(1)
	const n, takers = 20000, 4
	pcs := make([]parkConn, n)
	seen := make([]atomic.Int32, n)
	var got atomic.Int32
	var wg sync.WaitGroup
	for range takers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got.Load() < n {
				if pc := w.pop(); pc != nil {
					seen[pc.slot].Add(1)
					got.Add(1)
				} else {
					runtime.Gosched()
				}
			}
		}()
	}
	for i := range pcs {
		pcs[i].slot = int32(i)
		w.push(&pcs[i])
		if i%3000 == 2999 {
			time.Sleep(time.Millisecond) // let the takers catch up, then grow the ring again
		}
	}
	wg.Wait()
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("connection %d taken %d times", i, c)
		}
	}
	if q := w.queued(); q != 0 {
		t.Errorf("%d still queued", q)
	}
	t.Logf("ring of %d", len(w.ring.Load().slots))
}

// TestParkConnSize: every idle connection holds a parkConn, so its size is the
// bytes per idle connection this package adds; 112 is a size class of Go's allocator
// (128 the next one).
func TestParkConnSize(t *testing.T) {
	if n := unsafe.Sizeof(parkConn{}); n > 112 {
		t.Fatalf("parkConn is %d bytes; want at most 112", n)
	}
}
