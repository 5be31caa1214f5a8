package web_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/server"
)

// Loopback addresses of the end-to-end test's roles: the API on 127.0.0.1, two
// backends, and a frontend pool of its own for the NodeBalancer's ipv4.
const (
	chromiumPath = "/usr/bin/chromium"
	backendA     = "127.0.0.2"
	backendB     = "127.0.0.3"
	frontendPool = "127.0.66.0/24"
)

// TestConsoleInChromium walks the seed document's "Add, Edit, and Remove Backend
// Nodes" in real headless Chromium against a real server with real backends: sign in,
// create a NodeBalancer and an http configuration, add two nodes, see them UP, edit,
// fail validation, watch a node go DOWN, remove a node, check the graphs, delete.
// The browser side is web/e2e/console.test.mjs (playwright-core).
func TestConsoleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test skipped in -short mode")
	}
	requireBrowserTools(t)

	backends := []string{startBackend(t, backendA), startBackend(t, backendB)}
	token := randomToken(t)
	srv, err := server.New(server.Config{
		Listen:         "127.0.0.1:0",
		DataDir:        t.TempDir(),
		FrontendPool:   []netip.Prefix{netip.MustParsePrefix(frontendPool)},
		BackendRanges:  model.DefaultBackendRanges(),
		Region:         "local",
		BootstrapToken: token,
		ShutdownGrace:  2 * time.Second,
		Log:            slog.New(slog.NewTextHandler(testWriter{t, "server: "}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("server stopped with: %v", err)
		}
	})
	base := "http://" + srv.Addr().String()
	waitHealthy(t, base+"/healthz")

	shots, err := filepath.Abs(filepath.Join("e2e", "screenshots"))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	defer stop()
	cmd := exec.CommandContext(runCtx, "node", "console.test.mjs")
	cmd.Dir = "e2e"
	cmd.Env = append(os.Environ(),
		"NB_URL="+base,
		"NB_TOKEN="+token,
		"NB_BACKENDS="+strings.Join(backends, ","),
		"NB_FRONTEND_PORT="+fmt.Sprint(freePort(t)),
		"NB_SCREENSHOTS="+shots,
	)
	cmd.WaitDelay = 10 * time.Second
	out := testWriter{t, "browser: "}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err = cmd.Run()
	t.Logf("browser test took %s", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("console.test.mjs failed: %v (screenshots, if any, are in %s)", err, shots)
	}
}

// requireBrowserTools skips the test when Chromium, node or playwright-core is
// missing, unless CI=true, where a missing tool is a failure: CI installs them.
func requireBrowserTools(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := os.Stat(chromiumPath); err != nil {
		missing = append(missing, chromiumPath+" (apt-get install chromium)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	if _, err := os.Stat(filepath.Join("e2e", "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "web/e2e/node_modules (cd web/e2e && npm ci)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "browser end-to-end test needs: " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " — .ci/run installs them")
	}
	t.Skip(msg)
}

// startBackend serves a small site on ip: GET / names the backend, GET /health
// answers 200 — or 503 after POST /fail, until POST /recover — so the test can
// take the node DOWN and back as a real outage would.
func startBackend(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("backend on %s: %v", ip, err)
	}
	var failing atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "backend %s\n", ip)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, _ *http.Request) { failing.Store(true) })
	mux.HandleFunc("POST /recover", func(w http.ResponseWriter, _ *http.Request) { failing.Store(false) })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func randomToken(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "e2e-" + hex.EncodeToString(b)
}

// freePort returns a TCP port that was free on loopback a moment ago, for the
// configuration the browser creates on the NodeBalancer's own address.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy at %s: %v", url, errors.Join(err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testWriter sends each line written to it to t.Log, so the browser's steps and the
// server's warnings appear with the test's output.
type testWriter struct {
	t      *testing.T
	prefix string
}

func (w testWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		w.t.Log(w.prefix + sc.Text())
	}
	return len(p), nil
}
