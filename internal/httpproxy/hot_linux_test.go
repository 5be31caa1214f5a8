//go:build linux

package httpproxy

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A client sending requests back to back makes its connection hot: it waits for them
// in Go's poller instead of parking after each one. Idle for hotWithin, it parks
// again, and is served from the parking epoll set as before.
func TestHotConnectionParksOnlyWhenIdle(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: time.Minute}})
	rc := dialProxy(t, p)
	const burst = 40
	for i := range burst {
		path := fmt.Sprintf("/b%d", i)
		rc.send("GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n")
		if got := body(t, rc.response("GET")); got != path {
			t.Fatalf("request %d: got %q", i, got)
		}
	}
	during := parks.Load()
	t.Logf("%d parks during %d back-to-back requests", during, burst)
	// Parking after each request is what a connection that is not hot does. The first
	// park, and one more when the machine held up the client past hotWithin, are
	// allowed for.
	if during > burst/4 {
		t.Errorf("%d parks during %d back-to-back requests: the connection did not stay in Go's poller", during, burst)
	}
	// Idle past hotWithin: it parks.
	waitParks(t, parks, during+1)
	// Back in the parking epoll set: the next request wakes it.
	time.Sleep(3 * hotWithin)
	rc.send("GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
	if got := body(t, rc.response("GET")); got != "/after" {
		t.Fatalf("after the hot spell: got %q", got)
	}
	waitParks(t, parks, during+2)
}

// A hot connection that parks keeps the idle timeout of its last response: not of
// the park before its hot spell (which has passed by then), nor longer.
func TestHotConnectionIdleTimeoutCountsFromLastResponse(t *testing.T) {
	parks := countParks(t, nil)
	const idle = 600 * time.Millisecond
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: idle}})
	rc := dialProxy(t, p)
	rc.send("GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
	body(t, rc.response("GET"))
	waitParks(t, parks, 1) // parked, its deadline the first response's + idle
	// Hot for longer than the idle timeout, then idle.
	var last time.Time
	for start := time.Now(); time.Since(start) < idle+200*time.Millisecond; {
		rc.send("GET /hot HTTP/1.1\r\nHost: h\r\n\r\n")
		body(t, rc.response("GET"))
		last = time.Now()
	}
	took, got := closedWithin(t, rc, 5*time.Second)
	if got != "" {
		t.Fatalf("the idle connection was sent %q", got)
	}
	if since := time.Since(last); since < idle-50*time.Millisecond || since > idle+time.Second {
		t.Errorf("closed %v after the last response (%v after the client's last read), want about %v", since, took, idle)
	}
}

// A graceful stop ends a hot connection waiting for its next request at once, as it
// does a parked one.
func TestStopClosesHotAtOnce(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: time.Minute}})
	rc := dialProxy(t, p)
	for range 10 {
		rc.send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		body(t, rc.response("GET"))
	}
	before := parks.Load()
	p.cancel()
	if took, got := closedWithin(t, rc, 5*time.Second); took > 2*time.Second || got != "" {
		t.Errorf("a hot connection closed %v after the stop, sent %q", took, got)
	}
	if n := parks.Load(); n != before {
		t.Errorf("the stopped connection parked (%d parks, %d before the stop)", n, before)
	}
}

// Many clients whose gaps between requests fall on both sides of hotWithin, so that
// their connections keep moving between Go's poller and the parking epoll set (some
// requests pipelined in pairs): every request is answered.
func TestHotTransitionsStress(t *testing.T) {
	parks := countParks(t, nil)
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: time.Minute}})
	gaps := []time.Duration{0, 0, 0, hotWithin / 2, 0, 2 * hotWithin, 0, hotWithin + hotWithin/2}
	const clients, requests = 16, 80
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			errs <- stressClient(p.addr, c, requests, func(i int) time.Duration { return gaps[(c+i)%len(gaps)] })
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if parks.Load() < clients {
		t.Errorf("%d parks: the gaps past hotWithin should have parked every connection", parks.Load())
	}
	t.Logf("%d parks for %d requests", parks.Load(), clients*requests)
}

// At most half of a poller's workers serve hot connections: past that, connections
// park after each request as before, so that hot ones cannot hold every worker. The
// count goes back to zero once they idle.
func TestHotConnectionsTakeAtMostHalfTheWorkers(t *testing.T) {
	pollers.once.Do(startPollers)
	if len(pollers.ps) != 1 {
		t.Skipf("%d pollers: the cap is per poller", len(pollers.ps))
	}
	w := pollers.ps[0].pool
	old := w.max.Load()
	w.max.Store(4) // two hot connections at most
	t.Cleanup(func() { w.max.Store(old) })
	p := startProxy(t, &Config{Router: pathBackend(t), Timeouts: Timeouts{ClientIdle: time.Minute}})
	const clients, burst = 4, 150
	var peak atomic.Int32
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := w.hot.Load(); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() { errs <- stressClient(p.addr, c, burst, func(int) time.Duration { return 0 }) })
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("at most %d of %d connections hot at once", peak.Load(), clients)
	if n := peak.Load(); n > 2 || n == 0 {
		t.Errorf("%d connections hot at once with four workers, want 1 or 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.hot.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted hot after they idled", w.hot.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// makeHot sends back-to-back requests on rc until its connection is hot (it stops
// parking), and fails the test if it does not become so.
func makeHot(t *testing.T, rc *rawClient, parks *atomic.Int64) {
	t.Helper()
	for range 20 {
		before := parks.Load()
		for range 5 {
			rc.send("GET /warm HTTP/1.1\r\nHost: h\r\n\r\n")
			body(t, rc.response("GET"))
		}
		if parks.Load() == before {
			return
		}
	}
	t.Fatal("the connection still parks after 100 back-to-back requests")
}

// On a hot connection a body that arrives after its head, later than hotWithin (so
// past the wait's grace deadline), is read through Go's poller and the connection
// stays usable.
func TestHotConnectionLateBody(t *testing.T) {
	parks := countParks(t, nil)
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.URL.Path+":"+string(b))
	}))
	p := startProxy(t, &Config{Router: &testRouter{backends: []*Backend{backendFor(be, "a")}}, Timeouts: Timeouts{ClientIdle: time.Minute}})
	rc := dialProxy(t, p)
	makeHot(t, rc, parks)
	rc.send("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
	time.Sleep(5 * hotWithin)
	rc.send("56789")
	if got := body(t, rc.response("POST")); got != "/up:0123456789" {
		t.Fatalf("got %q", got)
	}
	rc.send("POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
	time.Sleep(5 * hotWithin)
	rc.send("2\r\nde\r\n0\r\n\r\n")
	if got := body(t, rc.response("POST")); got != "/chunked:abcde" {
		t.Fatalf("got %q", got)
	}
	rc.send("GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
	if got := body(t, rc.response("GET")); got != "/after:" {
		t.Fatalf("got %q", got)
	}
}

// An upgrade on a hot connection tunnels through Go's poller, and ends when the
// client closes its side.
func TestHotConnectionUpgrade(t *testing.T) {
	parks := countParks(t, nil)
	tr := &testRouter{backends: []*Backend{upgradeEchoBackend(t)}}
	p := startProxy(t, &Config{Router: tr, Timeouts: Timeouts{ClientIdle: time.Minute}})
	rc := dialProxy(t, p)
	makeHot(t, rc, parks) // the echo backend answers these 400
	rc.send("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	resp := rc.response("GET")
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	echoThenClose(t, rc)
}

// On a hot connection too, a backend's half-close of an upgraded connection ends
// that direction only (goConn.CloseWrite).
func TestHotConnectionUpgradeHalfClose(t *testing.T) {
	parks := countParks(t, nil)
	be, got := upgradeHalfCloseBackend(t)
	p := startProxy(t, &Config{Router: &testRouter{backends: []*Backend{be}}, Timeouts: Timeouts{ClientIdle: time.Minute}})
	rc := dialProxy(t, p)
	makeHot(t, rc, parks) // empty 200s from the same backend
	rc.send("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp := rc.response("GET"); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	halfCloseThenSend(t, rc, got)
}
