package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/linode/linodego"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// TestSIGTERMExitsWhenInFlightWorkEnds: with a long --shutdown-grace, serve exits as
// soon as nothing is in flight: connections waiting for a request or amid a head
// (http, https) are closed at once, an idle h2 connection after Go's one-second
// GOAWAY wait, and a request in flight or a tcp session is let finish, the exit
// following its end instead of the whole grace.
func TestSIGTERMExitsWhenInFlightWorkEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const grace = 20 * time.Second
	// The node answers /slow after 1.5 s and anything else at once.
	node := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(1500 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	})}
	nodeLn, err := net.Listen("tcp", "127.0.212.2:0")
	if err != nil {
		t.Fatal(err)
	}
	go node.Serve(nodeLn)
	t.Cleanup(func() { node.Close() })
	echo := testnet.ServeConns(t, "127.0.212.3:0", func(c net.Conn) { io.Copy(c, c) })
	cert := testcert.New(t, "sigterm.test")

	for _, tc := range []struct {
		name string
		// open connects to the started NodeBalancer's ip; it returns a func run after
		// SIGTERM that checks what the client sees, and the longest exit it allows.
		open func(t *testing.T, ip string) (after func(), limit time.Duration)
	}{
		{"nothing open", func(t *testing.T, ip string) (func(), time.Duration) {
			return func() {}, 2 * time.Second
		}},
		{"idle http keep-alive", func(t *testing.T, ip string) (func(), time.Duration) {
			c := dialKeepAlive(t, ip+":8080", nil)
			return func() { c.expectClosed(t) }, 2 * time.Second
		}},
		{"idle https keep-alive", func(t *testing.T, ip string) (func(), time.Duration) {
			c := dialKeepAlive(t, ip+":8443", &tls.Config{RootCAs: cert.Pool, ServerName: "sigterm.test"})
			return func() { c.expectClosed(t) }, 2 * time.Second
		}},
		{"http connection that sent nothing", func(t *testing.T, ip string) (func(), time.Duration) {
			c := dialSilent(t, ip+":8080", nil)
			return func() { expectEOF(t, c) }, 2 * time.Second
		}},
		{"https connection that sent nothing", func(t *testing.T, ip string) (func(), time.Duration) {
			c := dialSilent(t, ip+":8443", &tls.Config{RootCAs: cert.Pool, ServerName: "sigterm.test"})
			return func() { expectEOF(t, c) }, 2 * time.Second
		}},
		{"http connection amid a head", func(t *testing.T, ip string) (func(), time.Duration) {
			c := dialSilent(t, ip+":8080", nil)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost:")
			return func() { expectEOF(t, c) }, 2 * time.Second
		}},
		{"idle h2", func(t *testing.T, ip string) (func(), time.Duration) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool, ServerName: "sigterm.test"}, ForceAttemptHTTP2: true}
			t.Cleanup(tr.CloseIdleConnections)
			resp, err := (&http.Client{Transport: tr}).Get("https://" + ip + ":8443/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("got %s, want HTTP/2", resp.Proto)
			}
			return func() {}, 2 * time.Second
		}},
		{"idle tcp session ended by the client", func(t *testing.T, ip string) (func(), time.Duration) {
			c, err := net.Dial("tcp", ip+":8093")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var b [1]byte
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, b[:]); err != nil { // through the node and back
				t.Fatal(err)
			}
			go func() { time.Sleep(time.Second); c.Close() }()
			return func() {}, 3 * time.Second
		}},
		{"request in flight", func(t *testing.T, ip string) (func(), time.Duration) {
			c := dialKeepAlive(t, ip+":8080", nil)
			c.send(t, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
			time.Sleep(200 * time.Millisecond) // on its way to the node
			return func() {
				resp := c.response(t)
				if resp.StatusCode != 200 || !resp.Close {
					t.Errorf("in-flight request after SIGTERM: %d, close %v; want 200 and Connection: close", resp.StatusCode, resp.Close)
				}
			}, 4 * time.Second
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const token = "sigterm-test-token-0123456789"
			apiURL, stop := runServeArgs(t, dir, []string{"--frontend-pool", "127.0.212.0/28",
				"--shutdown-grace", grace.String()}, "NODEBALANCER_BOOTSTRAP_TOKEN="+token)
			c := linodego.NewClient(nil)
			c.SetBaseURL(apiURL).SetAPIVersion("v4").SetToken(token)
			label := "sigterm"
			nb, err := c.CreateNodeBalancer(context.Background(), linodego.NodeBalancerCreateOptions{Region: "local", Label: &label,
				Configs: []*linodego.NodeBalancerConfigCreateOptions{
					{Port: 8080, Protocol: linodego.ProtocolHTTP, Check: linodego.CheckNone,
						Nodes: []linodego.NodeBalancerNodeCreateOptions{{Label: "web-1", Address: nodeLn.Addr().String()}}},
					{Port: 8443, Protocol: linodego.ProtocolHTTPS, Check: linodego.CheckNone, SSLCert: cert.CertPEM, SSLKey: cert.KeyPEM,
						Nodes: []linodego.NodeBalancerNodeCreateOptions{{Label: "web-1", Address: nodeLn.Addr().String()}}},
					{Port: 8093, Protocol: linodego.ProtocolTCP, Check: linodego.CheckNone,
						Nodes: []linodego.NodeBalancerNodeCreateOptions{{Label: "echo-1", Address: echo.Addr().String()}}},
				}})
			if err != nil {
				t.Fatal(err)
			}
			ip := *nb.IPv4
			waitListening(t, ip+":8080", ip+":8443", ip+":8093")
			after, limit := tc.open(t, ip)
			start := time.Now()
			exited := make(chan error, 1)
			go func() { exited <- stop(syscall.SIGTERM) }()
			after()
			if err := <-exited; err != nil {
				t.Fatalf("serve exit on SIGTERM: %v", err)
			}
			took := time.Since(start)
			t.Logf("exit %v after SIGTERM", took.Round(time.Millisecond))
			if took > limit {
				t.Errorf("serve took %v to exit on SIGTERM (grace %v), want at most %v", took.Round(time.Millisecond), grace, limit)
			}
		})
	}
}

// waitListening waits until every address accepts connections.
func waitListening(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not accept connections: %v", a, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// dialSilent connects (with a TLS handshake when tc is set) and sends nothing.
func dialSilent(t *testing.T, addr string, tc *tls.Config) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if tc != nil {
		tc.NextProtos = []string{"http/1.1"}
		c, err = tls.Dial("tcp", addr, tc)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	time.Sleep(100 * time.Millisecond) // accepted and waiting for a request
	return c
}

// expectEOF checks that the server closed c without a word.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !isReset(err) {
		t.Errorf("read %q, %v after SIGTERM; want a close", b, err)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// keepAliveConn is an HTTP/1.1 client connection that has had one answered request.
type keepAliveConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string, tc *tls.Config) *keepAliveConn {
	t.Helper()
	var c net.Conn
	var err error
	if tc != nil {
		tc.NextProtos = []string{"http/1.1"}
		c, err = tls.Dial("tcp", addr, tc)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	k := &keepAliveConn{c: c, br: bufio.NewReader(c)}
	k.send(t, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")
	if resp := k.response(t); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %d, close %v", resp.StatusCode, resp.Close)
	}
	return k
}

func (k *keepAliveConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(k.c, s); err != nil {
		t.Fatal(err)
	}
}

func (k *keepAliveConn) response(t *testing.T) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	return resp
}

// expectClosed checks that the server closed the idle connection without a word.
func (k *keepAliveConn) expectClosed(t *testing.T) {
	t.Helper()
	if b, err := k.br.ReadByte(); err == nil {
		t.Errorf("idle connection got %q after SIGTERM, want a close", b)
	}
}
