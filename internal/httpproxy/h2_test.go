package httpproxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// startTLSProxy runs a TLS listener that hands h2 connections to an HTTP2Server and
// the others to ServeConn, as the data plane does.
func startTLSProxy(t *testing.T, cfg *Config) string {
	t.Helper()
	srv := NewServer(cfg, nil)
	h2 := srv.NewHTTP2Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcfg := &tls.Config{Certificates: []tls.Certificate{testcert.New(t, "proxy.test").TLS}, NextProtos: []string{"h2", "http/1.1"}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := tls.Server(c, tcfg)
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return
				}
				if tc.ConnectionState().NegotiatedProtocol == "h2" {
					h2.ServeConn(ctx, tc)
					return
				}
				srv.ServeConn(ctx, tc, netip.MustParseAddrPort(ln.Addr().String()))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer scancel()
		h2.Shutdown(sctx)
		wg.Wait()
	})
	return ln.Addr().String()
}

func h2Client(forceH2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: forceH2}
	if !forceH2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestHTTP2ClientsForwarded(t *testing.T) {
	be := newTestBackend(t, "127.0.0.2", echoHeaders())
	dead := NewBackend(netip.MustParseAddrPort(deadAddr(t, "127.0.0.3")), BackendOptions{Cookie: "dead"})
	ok := backendFor(be, "ok")
	tr := &testRouter{backends: []*Backend{dead, ok}}
	addr := startTLSProxy(t, &Config{Router: tr, Scheme: "https", StickyCookie: true})

	for _, h2 := range []bool{true, false} {
		client := h2Client(h2)
		req, _ := http.NewRequest("GET", "https://"+addr+"/path?q=1", nil)
		req.Header.Set("X-Forwarded-For", "10.1.1.1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := string(b)
		wantProto := map[bool]int{true: 2, false: 1}[h2]
		if resp.StatusCode != 200 || resp.ProtoMajor != wantProto {
			t.Fatalf("h2=%v: status %d proto %d body %q", h2, resp.StatusCode, resp.ProtoMajor, got)
		}
		for _, w := range []string{"GET /path?q=1 HTTP/1.1", "X-Forwarded-For: 10.1.1.1, 127.0.0.1", "X-Forwarded-Proto: https",
			"X-Real-Ip: 127.0.0.1", "Forwarded: for=127.0.0.1;proto=https"} {
			if !strings.Contains(got, w+"\n") {
				t.Errorf("h2=%v: backend saw\n%s\nwant %q", h2, got, w)
			}
		}
		if sc := resp.Header.Get("Set-Cookie"); sc != "NB_SRVID=ok; Path=/; HttpOnly; Secure" {
			t.Errorf("h2=%v: Set-Cookie %q", h2, sc)
		}
	}
	// Every attempt was reported, connect failures of the dead backend included.
	for _, d := range tr.waitDone(t, 2) {
		if d.b == dead && d.r.Failure != FailConnect || d.b == ok && d.r.Status != 200 {
			t.Errorf("Done %+v for %v", d.r, d.b.Addr())
		}
	}
}

func TestHTTP2NoBackend(t *testing.T) {
	addr := startTLSProxy(t, &Config{Router: &testRouter{}, Scheme: "https"})
	resp, err := h2Client(true).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.ProtoMajor != 2 {
		t.Errorf("status %d proto %d, want 503 over h2", resp.StatusCode, resp.ProtoMajor)
	}
}
