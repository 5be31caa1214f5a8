package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// The API speaks TLS with --api-tls-cert/--api-tls-key, and a SIGHUP after the files
// were replaced gives new connections the new certificate; a pair that cannot be read
// leaves the last good one in place.
func TestAPICertificateReloadedOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.pem"), filepath.Join(dir, "api.key")
	write := func(c testcert.Cert) {
		t.Helper()
		if err := os.WriteFile(certFile, []byte(c.CertPEM), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(c.KeyPEM), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	first, second := testcert.New(t, "first.example"), testcert.New(t, "second.example")
	write(first)
	s, err := New(Config{Listen: "127.0.84.1:0", DataDir: dir, Region: "local",
		FrontendPool:  []netip.Prefix{netip.MustParsePrefix("127.0.85.0/24")},
		BackendRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		APITLSCert:    certFile, APITLSKey: keyFile, BootstrapToken: "tls-test-token-0123456789abcdef",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// served is the certificate a new connection is shown, once /healthz answers ok.
	served := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		b, _ := io.ReadAll(c)
		if !bytes.Contains(b, []byte("200 OK")) && !bytes.Contains(b, []byte("503")) {
			t.Fatalf("no http answer over TLS: %q", b)
		}
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	if got := served(); !bytes.Equal(got, first.TLS.Certificate[0]) {
		t.Fatal("the first connection was not shown --api-tls-cert")
	}
	// Linode's clients (linodego, Terraform's provider) speak http/2 when offered:
	// an API request over it, checked against the certificate, works.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: first.Pool, ServerName: "first.example"}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+s.Addr().String()+"/v4/nodebalancers", nil)
	req.Header.Set("Authorization", "Bearer tls-test-token-0123456789abcdef")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("GET /v4/nodebalancers over TLS: %s %s; want 200 over HTTP/2.0", resp.Proto, resp.Status)
	}
	// An unreadable pair: SIGHUP keeps the first certificate.
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond)
	if got := served(); !bytes.Equal(got, first.TLS.Certificate[0]) {
		t.Fatal("a bad key replaced the certificate")
	}
	write(second)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(3 * time.Second)
	for !bytes.Equal(served(), second.TLS.Certificate[0]) {
		if time.Now().After(deadline) {
			t.Fatal("after SIGHUP new connections still get the old certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Without TLS a SIGHUP (systemctl reload) is logged, not fatal: the server answers on.
func TestSIGHUPWithoutTLSKeepsServing(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Listen: "127.0.84.2:0", DataDir: dir, Region: "local",
		FrontendPool:  []netip.Prefix{netip.MustParsePrefix("127.0.85.0/24")},
		BackendRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Log:           slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	get := func() error {
		r, err := http.Get("http://" + s.Addr().String() + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for get() != nil {
		if time.Now().After(deadline) {
			t.Fatal("server not answering")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)        // Run has registered for SIGHUP
	syscall.Kill(os.Getpid(), syscall.SIGHUP) // would end this test binary if nobody caught it
	time.Sleep(200 * time.Millisecond)
	if err := get(); err != nil {
		t.Fatalf("after SIGHUP: %v", err)
	}
}
