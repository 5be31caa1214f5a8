package httpproxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The keep-alive loop on plain TCP waits without reading again after a read that
// emptied the socket; these are the cases where a request could be missed that way.

// A request that arrives while the previous one is being served (before the proxy waits
// again) is served at once, not after the idle timeout.
func TestRequestArrivingDuringExchangeIsServed(t *testing.T) {
	release := make(chan struct{})
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, r.URL.Path)
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr, Timeouts: Timeouts{ClientIdle: time.Minute}})
	rc := dialProxy(t, p)
	rc.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the proxy is waiting for the backend
	rc.send("GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	close(release)
	start := time.Now()
	for _, want := range []string{"/slow", "/next"} {
		if got := body(t, rc.response("GET")); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the second response took %v", d)
	}
}

// A head that arrives in pieces, with pauses, is put together.
func TestHeadInPieces(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path+" "+r.Header.Get("X-A"))
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	for i := 0; i < 2; i++ {
		for _, piece := range []string{"GET /pie", "ces HTTP/1.1\r", "\nHost: h\r\nX-A: 1", "\r\n", "\r\n"} {
			rc.send(piece)
			time.Sleep(20 * time.Millisecond)
		}
		if got := body(t, rc.response("GET")); got != "/pieces 1" {
			t.Fatalf("round %d: got %q", i, got)
		}
	}
}

// A body that arrives after its head (the blocking path) and then further requests on
// the same connection (back in the raw loop) are all served.
func TestLateBodyThenKeepAlive(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.URL.Path+":"+string(b))
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	rc.send("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
	time.Sleep(50 * time.Millisecond)
	rc.send("56789")
	if got := body(t, rc.response("POST")); got != "/up:0123456789" {
		t.Fatalf("got %q", got)
	}
	big := strings.Repeat("x", 40000) // more than the read buffer
	rc.send("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 40000\r\n\r\n" + big + "GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
	if got := body(t, rc.response("POST")); got != "/big:"+big {
		t.Fatalf("got %d bytes", len(got))
	}
	if got := body(t, rc.response("GET")); got != "/after:" {
		t.Fatalf("got %q", got)
	}
}

// Requests buffered before the client closed its sending side are all answered.
func TestPipelinedRequestsBeforeHalfClose(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr})
	rc := dialProxy(t, p)
	// Exactly one read buffer of 64-byte heads: the proxy's first read fills its room,
	// so it reads again (and finds the end) before serving the rest.
	var sb strings.Builder
	const n = DefaultMaxHeaderBytes / 64
	path := "/" + strings.Repeat("p", 37)
	for i := 0; i < n; i++ {
		sb.WriteString("GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	if sb.Len() != DefaultMaxHeaderBytes {
		t.Fatalf("heads are %d bytes", sb.Len())
	}
	rc.send(sb.String())
	rc.c.(interface{ CloseWrite() error }).CloseWrite()
	for i := 0; i < n; i++ {
		if got := body(t, rc.response("GET")); got != path {
			t.Fatalf("response %d: %q", i, got)
		}
	}
}

// Durations reported to the Router and the access log cover the whole response, a
// streamed body included, and the wait for a slow backend.
func TestDurationsCoverTheWholeResponse(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-head" {
			time.Sleep(150 * time.Millisecond)
			io.WriteString(w, "late")
			return
		}
		w.Write([]byte("part1-"))
		w.(http.Flusher).Flush() // the head and a first chunk go out now
		time.Sleep(150 * time.Millisecond)
		w.Write([]byte("part2"))
	}))
	entries := make(chan AccessEntry, 4)
	tr := &testRouter{backends: []*Backend{backendFor(be, "a")}}
	p := startProxy(t, &Config{Router: tr, AccessLog: func(e AccessEntry) { entries <- e }})
	rc := dialProxy(t, p)
	for i, path := range []string{"/slow-head", "/slow-body"} {
		rc.send("GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n")
		body(t, rc.response("GET"))
		select {
		case e := <-entries:
			if e.Duration < 150*time.Millisecond {
				t.Errorf("%s: access log duration %v", path, e.Duration)
			}
			if e.Method != "" || e.Target != "" {
				t.Errorf("%s: request line %q %q copied without LogRequestLine", path, e.Method, e.Target)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no access log entry")
		}
		d := tr.waitDone(t, i+1)
		if got := d[i].r.Duration; got < 150*time.Millisecond {
			t.Errorf("%s: Done duration %v", path, got)
		}
	}
}
