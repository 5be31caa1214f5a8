package dataplane

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// TestConnectionCapAnswersHTTP503: over --max-conns, an http or https client is told
// "503 Service Unavailable" with Retry-After and the connection closes; the refusal is
// counted. (tcp clients get a reset: TestConnectionCap.)
func TestConnectionCapAnswersHTTP503(t *testing.T) {
	e := newEnv(t, "127.0.60.0/24")
	e.plane.opts.MaxConns = 1
	nameServer(t, "127.0.61.2:9011", "web")
	cert := testcert.New(t, "busy.test")
	https := config(model.ProtocolHTTPS, 443, node("web", "127.0.61.2:9011", 50))
	https.SSLCert, https.SSLKey = cert.CertPEM, cert.KeyPEM
	nb := e.create(config(model.ProtocolHTTP, 80, node("web", "127.0.61.2:9011", 50)), https)
	// Both probes accepted and ended (active alone can read 0 while one still waits in
	// the backlog: it would then take the cap in place of the held client).
	e.settle(1)
	e.settle(2)

	held, err := net.Dial("tcp", nb.IPv4+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waitFor(t, time.Second, "one active", func() bool { return e.plane.active.Load() == 1 })
	refusedBefore := e.plane.opts.Stats.Config(1).Refused.Load() + e.plane.opts.Stats.Config(2).Refused.Load()

	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"http", func() (net.Conn, error) { return net.Dial("tcp", nb.IPv4+":80") }},
		{"https", func() (net.Conn, error) {
			return tls.Dial("tcp", nb.IPv4+":443", &tls.Config{RootCAs: cert.Pool, ServerName: "busy.test",
				NextProtos: []string{"h2", "http/1.1"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: busy.test\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("a client over the cap got no response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !resp.Close {
				t.Fatalf("got %d, Retry-After %q, close %v (%q); want 503, Retry-After 1, Connection: close",
					resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close, body)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Fatal("the connection stayed open after the 503")
			}
		})
	}
	if got := e.plane.opts.Stats.Config(1).Refused.Load() + e.plane.opts.Stats.Config(2).Refused.Load() - refusedBefore; got != 2 {
		t.Errorf("refused counters grew by %d, want 2", got)
	}
	// The held client is served normally.
	io.WriteString(held, "GET / HTTP/1.1\r\nHost: busy.test\r\n\r\n")
	held.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the client under the cap: %v %v", resp, err)
	}
}
