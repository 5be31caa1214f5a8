package httpproxy

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// paths runs a test on both client loops: serveRaw (plain TCP) and the blocking one
// (TLS and other wrapped connections).
var paths = []struct {
	name  string
	start func(*testing.T, *Config) *testProxy
}{
	{"raw", startProxy},
	{"blocking", startProxyBlocking},
}

// closedWithin reads from rc until the proxy closes the connection and returns how
// long that took and what was read.
func closedWithin(t *testing.T, rc *rawClient, limit time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	rc.c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(rc.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("still open after %v", limit)
	}
	return time.Since(start), string(b)
}

// TestSilentConnectionGetsHeaderTimeout: a connection that sends nothing is closed
// after the header timeout, like one that sends half a head, not after the keep-alive
// idle timeout; nothing is answered.
func TestSilentConnectionGetsHeaderTimeout(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			p := path.start(t, &Config{Router: &testRouter{},
				Timeouts: Timeouts{ClientHeader: 200 * time.Millisecond, ClientIdle: 20 * time.Second}})
			rc := dialProxy(t, p)
			took, got := closedWithin(t, rc, 5*time.Second)
			if got != "" {
				t.Errorf("a silent connection was answered %q", got)
			}
			if took < 150*time.Millisecond || took > 2*time.Second {
				t.Errorf("closed after %v, want the 200ms header timeout", took)
			}
		})
	}
}

// TestKeepAliveIdleOutlastsHeaderTimeout: between requests the idle timeout applies,
// not the header timeout.
func TestKeepAliveIdleOutlastsHeaderTimeout(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			p := path.start(t, &Config{Router: &testRouter{},
				Timeouts: Timeouts{ClientHeader: 100 * time.Millisecond, ClientIdle: 1500 * time.Millisecond}})
			rc := dialProxy(t, p)
			rc.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp := rc.response("GET"); resp.StatusCode != 503 || resp.Close {
				t.Fatalf("first request: %d, close %v", resp.StatusCode, resp.Close)
			}
			took, _ := closedWithin(t, rc, 5*time.Second)
			if took < time.Second {
				t.Errorf("an idle keep-alive connection was closed after %v, want the 1.5s idle timeout", took)
			}
		})
	}
}

// TestStopEndsPartialHead: a graceful stop closes a connection that is still sending
// a head at once, without a 408: nothing of that request has been acted on.
func TestStopEndsPartialHead(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			p := path.start(t, &Config{Router: &testRouter{}, Timeouts: Timeouts{ClientHeader: 20 * time.Second}})
			rc := dialProxy(t, p)
			rc.send("GET / HTTP/1.1\r\nHo")
			time.Sleep(100 * time.Millisecond)
			p.cancel()
			took, got := closedWithin(t, rc, 5*time.Second)
			if got != "" || took > time.Second {
				t.Errorf("after stop: %q after %v, want a close at once", got, took)
			}
		})
	}
}
