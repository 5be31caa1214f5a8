package cli

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/testbin"
)

// buildBinary builds nodebalancer once per test run.
func buildBinary(t *testing.T) string { return testbin.Nodebalancer(t) }

// TestDemoEndToEnd runs the real binary's demo: it must balance 25/25/50, follow a
// drain made with the CLI, and stop cleanly on SIGINT leaving no listener behind.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	cmd := exec.Command(bin, "demo", "--listen", "127.0.0.1:0", "--frontend-pool", "127.0.4.0/24", "--port", "8000", "--watch", "300ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before %s; stderr:\n%s", what, stderr.String())
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s from the demo within 30 s; stderr:\n%s", what, stderr.String())
		}
		return ""
	}
	var apiURL, token, frontend string
	counts := map[string]string{}
	spreadRE := regexp.MustCompile(`^\s+(backend-\d)\s+(\d+) \(`)
	for len(counts) < 3 {
		l := next("the first spread")
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "API":
			apiURL = strings.TrimSuffix(f[1], "/v4")
		case len(f) == 2 && f[0] == "token":
			token = f[1]
		case len(f) == 2 && f[0] == "frontend":
			frontend = f[1]
		}
		if m := spreadRE.FindStringSubmatch(l); m != nil {
			counts[m[1]] = m[2]
		}
	}
	if counts["backend-1"] != "25" || counts["backend-2"] != "25" || counts["backend-3"] != "50" {
		t.Fatalf("first burst spread %v, want 25/25/50", counts)
	}

	// Drain backend-3 with the CLI, as the README tells a newcomer to.
	var out, errb bytes.Buffer
	if code := Main([]string{"nodebalancers", "node-update", "1", "1", "3", "--mode", "drain", "--url", apiURL, "--token", token}, nil, &out, &errb); code != 0 {
		t.Fatalf("node-update exit %d: %s", code, errb.String())
	}
	drained := false
	deadline := time.Now().Add(10 * time.Second)
	for !drained && time.Now().Before(deadline) {
		l := next("a watch line after the drain")
		if strings.Contains(l, "last 20:") && !strings.Contains(l, "backend-3") && strings.Contains(l, "backend-1  10") {
			drained = true
		}
	}
	if !drained {
		t.Fatal("after draining backend-3 the watch lines never showed it without new clients")
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo exit after SIGINT: %v; stderr:\n%s", err, stderr.String())
	}
	host := strings.TrimSuffix(strings.TrimPrefix(frontend, "http://"), "/")
	for _, addr := range []string{host, strings.TrimPrefix(apiURL, "http://")} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections after the demo stopped", addr)
		}
	}
	if entries, _ := filepath.Glob(filepath.Join(os.TempDir(), "nodebalancer-demo-*")); len(entries) > 0 {
		for _, e := range entries {
			if fi, err := os.Stat(e); err == nil && time.Since(fi.ModTime()) < time.Minute {
				t.Fatalf("demo left its data directory %s behind", e)
			}
		}
	}
}

// TestMain removes the binary buildBinary made.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Remove()
	os.Exit(code)
}
