package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linode/linodego"
	"github.com/spf13/pflag"
)

// runServe starts the real binary's serve on dir and returns its API URL and a stop
// function that sends sig and returns the exit error.
func runServe(t *testing.T, dir string, env ...string) (apiURL string, stop func(sig syscall.Signal) error) {
	t.Helper()
	return runServeArgs(t, dir, nil, env...)
}

// runServeArgs is runServe with more serve flags.
func runServeArgs(t *testing.T, dir string, args []string, env ...string) (apiURL string, stop func(sig syscall.Signal) error) {
	t.Helper()
	apiURL, _, stop = startServe(t, dir, args, env...)
	return apiURL, stop
}

// startServe is runServeArgs that also returns the process.
func startServe(t *testing.T, dir string, args []string, env ...string) (apiURL string, proc *os.Process, stop func(sig syscall.Signal) error) {
	t.Helper()
	cmd := exec.Command(buildBinary(t), append([]string{"serve", "--listen", "127.0.0.1:0", "--data", dir, "--frontend-pool", "127.0.5.0/24"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, API string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "nodebalancer ready" {
				found <- line.API
			}
		}
		close(found)
	}()
	select {
	case apiURL = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not log that it was ready")
	}
	if apiURL == "" {
		t.Fatal("serve exited before it was ready")
	}
	return apiURL, cmd.Process, func(sig syscall.Signal) error {
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatalf("serve did not stop within 15 s of %v", sig)
			return nil
		}
	}
}

// TestServeKeepsStateAcrossARestart is the first thing a user does: start serve,
// create a NodeBalancer with two nodes through linodego, stop it with SIGTERM, start
// it again on the same data directory and find everything as it was.
func TestServeKeepsStateAcrossARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	const token = "serve-test-token-0123456789"
	ctx := context.Background()
	apiURL, stop := runServe(t, dir, "NODEBALANCER_BOOTSTRAP_TOKEN="+token)
	c := linodego.NewClient(nil)
	c.SetBaseURL(apiURL).SetAPIVersion("v4").SetToken(token)
	label := "web"
	nb, err := c.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: &label,
		Configs: []*linodego.NodeBalancerConfigCreateOptions{{Port: 8080, Nodes: []linodego.NodeBalancerNodeCreateOptions{
			{Label: "web-1", Address: "127.0.0.2:80"}, {Label: "web-2", Address: "127.0.0.3:80", Weight: 100},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(syscall.SIGTERM); err != nil {
		t.Fatalf("serve exit on SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bootstrap-token")); !os.IsNotExist(err) {
		t.Fatal("a bootstrap token from the environment must not be written to disk")
	}

	apiURL, stop = runServe(t, dir)
	c.SetBaseURL(apiURL)
	got, err := c.GetNodeBalancer(ctx, nb.ID)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if *got.Label != "web" || *got.IPv4 != *nb.IPv4 {
		t.Fatalf("after restart %+v, before %+v", got, nb)
	}
	cfgs, err := c.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	if err != nil || len(cfgs) != 1 {
		t.Fatalf("configs after restart: %v %v", cfgs, err)
	}
	nodes, err := c.ListNodeBalancerNodes(ctx, nb.ID, cfgs[0].ID, nil)
	if err != nil || len(nodes) != 2 || nodes[1].Weight != 100 || nodes[0].Address != "127.0.0.2:80" {
		t.Fatalf("nodes after restart: %+v %v", nodes, err)
	}
	if err := stop(syscall.SIGINT); err != nil {
		t.Fatalf("serve exit on SIGINT: %v", err)
	}
}

// TestServeWritesAGeneratedTokenPrivately: without NODEBALANCER_BOOTSTRAP_TOKEN the
// first start writes a token only its owner can read, and that token works.
func TestServeWritesAGeneratedTokenPrivately(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	apiURL, stop := runServe(t, dir, "NODEBALANCER_BOOTSTRAP_TOKEN=")
	defer stop(syscall.SIGTERM)
	path := filepath.Join(dir, "bootstrap-token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	c := linodego.NewClient(nil)
	c.SetBaseURL(apiURL).SetAPIVersion("v4").SetToken(strings.TrimSpace(string(b)))
	if _, err := c.ListNodeBalancers(context.Background(), nil); err != nil {
		t.Fatalf("the written token does not work: %v", err)
	}
}

func TestServeFlagsForScale(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error; "" when the flags are good
	}{
		{[]string{"--max-nodes-per-config", "0"}, "--max-nodes-per-config must be between 1 and"},
		{[]string{"--max-nodes-per-config-premium", "5000"}, "--max-nodes-per-config-premium must be between 1 and"},
		{[]string{"--max-nodes-per-config", "500", "--max-nodes-per-config-premium", "2000", "--metrics-node-series=false"}, ""},
	} {
		var f serveFlags
		fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		f.bind(fl)
		if err := fl.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want == "" && (cfg.MaxNodesPerConfig != 500 || cfg.MaxNodesPerConfigPremium != 2000 || !cfg.MetricsNoNodeSeries):
			t.Errorf("%v: config %+v", tc.args, cfg)
		}
	}
}

func TestServeFlagsForTheStore(t *testing.T) {
	ep := []string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379,https://127.0.0.2:2379"}
	for _, tc := range []struct {
		args []string
		want string // in the error; "" when the flags are good
	}{
		{nil, ""},
		{[]string{"--store", "zookeeper"}, `--store: "zookeeper" is not bolt or etcd`},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379"}, "--etcd-* flags need --store etcd"},
		{[]string{"--store", "etcd"}, "--store etcd needs --etcd-endpoints"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379"}, `--etcd-endpoints: "127.0.0.1:2379" is not a URL`},
		{append(ep, "--etcd-prefix", "nb"), `--etcd-prefix: "nb" must begin and end with '/'`},
		{append(ep, "--etcd-cert", "c.pem"), "--etcd-cert and --etcd-key go together"},
		{append(ep, "--etcd-cacert", "/nonexistent/ca.pem"), "--etcd-cacert:"},
		{append(ep, "--etcd-timeout", "1ms"), "--etcd-timeout must be at least 100ms"},
		{append(ep, "--host-id", "a/b"), `--host-id: "a/b" must not contain`},
		{append(ep, "--etcd-compact-every", "10ms"), "--etcd-compact-every must be 0 or at least 1s"},
		{append(ep, "--host-id", "edge-1", "--etcd-prefix", "/lb/"), ""},
	} {
		var f serveFlags
		fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		f.bind(fl)
		if err := fl.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want == "" && cfg.HostID == "":
			t.Errorf("%v: no host id", tc.args)
		case tc.want == "" && len(tc.args) > 0 && (cfg.Store != "etcd" || len(cfg.Etcd.Endpoints) != 2 || cfg.Etcd.Prefix != "/lb/" || cfg.HostID != "edge-1"):
			t.Errorf("%v: config %+v", tc.args, cfg)
		}
	}
}

// /metrics asks for a token by default as soon as the API (or /metrics' own address)
// is reachable from elsewhere; an explicit --metrics-require-token wins either way.
func TestServeMetricsTokenDefaultFollowsListen(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false}, // 127.0.0.1:8080
		{[]string{"--listen", "[::1]:8080"}, false},
		{[]string{"--listen", "localhost:8080"}, false},
		{[]string{"--listen", "127.9.9.9:8080", "--metrics-listen", "127.0.0.1:9100"}, false},
		{[]string{"--listen", "0.0.0.0:8080"}, true},
		{[]string{"--listen", ":8080"}, true},
		{[]string{"--listen", "10.0.0.1:8080"}, true},
		{[]string{"--listen", "[2001:db8::1]:8080"}, true},
		{[]string{"--metrics-listen", "0.0.0.0:9100"}, true},
		{[]string{"--listen", "10.0.0.1:8080", "--metrics-require-token=false"}, false},
		{[]string{"--metrics-require-token"}, true},
	} {
		var f serveFlags
		fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		f.bind(fl)
		if err := fl.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.MetricsToken != tc.want {
			t.Errorf("%v: MetricsToken %v, want %v", tc.args, cfg.MetricsToken, tc.want)
		}
	}
}

func TestServeFlagsForHAAndTLS(t *testing.T) {
	ep := []string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--frontend-interface", "eth0"}, "--frontend-interface needs --store etcd"},
		{append(ep, "--frontend-interface", "eth0", "--frontend-lease", "1s"), "--frontend-lease: 1s must be whole seconds, 2s or more"},
		{append(ep, "--frontend-interface", "eth0", "--frontend-lease", "2500ms"), "--frontend-lease: 2.5s must be whole seconds"},
		{[]string{"--api-tls-cert", "c.pem"}, "--api-tls-cert and --api-tls-key go together"},
		{append(ep, "--frontend-interface", "eth0", "--frontend-lease", "3s"), ""},
	} {
		var f serveFlags
		fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		f.bind(fl)
		if err := fl.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want == "" && (cfg.FrontendInterface != "eth0" || cfg.FrontendLease != 3*time.Second):
			t.Errorf("%v: config %+v", tc.args, cfg)
		}
	}
}

// TestServeTCPEngineFlag: --tcp-engine reaches the server's config; a value that
// names no engine is refused naming the flag.
func TestServeTCPEngineFlag(t *testing.T) {
	r := runRaw("serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tcp-engine", "fibers")
	if r.code == 0 || !strings.Contains(r.stderr, "--tcp-engine") {
		t.Errorf("--tcp-engine fibers: exit %d, stderr %q; want a refusal naming the flag", r.code, r.stderr)
	}
	for _, v := range []string{"epoll", "goroutine"} {
		f := serveFlags{frontendPool: "127.0.1.0/24", backendCIDRs: "127.0.0.0/8", region: "local", logLevel: "info",
			maxConns: 1, maxNodes: 1000, maxNodesPremium: 2000, tcpEngine: v}
		if cfg, err := f.config(); err != nil || cfg.TCPEngine != v {
			t.Errorf("--tcp-engine %s: config %v, TCPEngine %q", v, err, cfg.TCPEngine)
		}
	}
}

// TestServeTCPIdleTimeoutFlag: --tcp-idle-timeout reaches the server's config, and a
// negative or sub-second value is refused naming the flag.
func TestServeTCPIdleTimeoutFlag(t *testing.T) {
	for _, v := range []string{"-1s", "500ms", "soon"} {
		r := runRaw("serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tcp-idle-timeout", v)
		if r.code == 0 || !strings.Contains(r.stderr, "tcp-idle-timeout") {
			t.Errorf("--tcp-idle-timeout %s: exit %d, stderr %q; want a refusal naming the flag", v, r.code, r.stderr)
		}
	}
	f := serveFlags{frontendPool: "127.0.1.0/24", backendCIDRs: "127.0.0.0/8", region: "local", logLevel: "info",
		maxConns: 1, tcpIdle: 5 * time.Minute, maxNodes: 1000, maxNodesPremium: 2000}
	cfg, err := f.config()
	if err != nil || cfg.TCPIdleTimeout != 5*time.Minute {
		t.Errorf("config: %v, TCPIdleTimeout %v; want 5m", err, cfg.TCPIdleTimeout)
	}
}

// TestServeTCPOwnWaitFlags: --tcp-own-wait and --tcp-busy-poll reach the server's
// config; values out of their range are refused naming the flag.
func TestServeTCPOwnWaitFlags(t *testing.T) {
	for _, c := range [][2]string{{"--tcp-own-wait", "-1us"}, {"--tcp-own-wait", "2ms"}, {"--tcp-busy-poll", "-1us"}, {"--tcp-busy-poll", "300us"}} {
		r := runRaw("serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", c[0], c[1])
		if r.code == 0 || !strings.Contains(r.stderr, c[0]) {
			t.Errorf("%s %s: exit %d, stderr %q; want a refusal naming the flag", c[0], c[1], r.code, r.stderr)
		}
	}
	f := serveFlags{frontendPool: "127.0.1.0/24", backendCIDRs: "127.0.0.0/8", region: "local", logLevel: "info",
		maxConns: 1, maxNodes: 1000, maxNodesPremium: 2000, tcpOwnWait: 200 * time.Microsecond, tcpBusyPoll: 50 * time.Microsecond}
	cfg, err := f.config()
	if err != nil || cfg.TCPOwnWait != 200*time.Microsecond || cfg.TCPBusyPoll != 50*time.Microsecond {
		t.Errorf("config: %v, TCPOwnWait %v, TCPBusyPoll %v; want 200µs and 50µs", err, cfg.TCPOwnWait, cfg.TCPBusyPoll)
	}
}

// TestServeAdaptProcsFlag: the number of Ps adapts by default; --adapt-procs=false
// turns that off, and so does a GOMAXPROCS in the environment unless the flag is
// given.
func TestServeAdaptProcsFlag(t *testing.T) {
	for _, c := range []struct {
		env  string
		args []string
		want bool
	}{
		{"", nil, true},
		{"", []string{"--adapt-procs=false"}, false},
		{"2", nil, false},
		{"2", []string{"--adapt-procs"}, true},
	} {
		t.Setenv("GOMAXPROCS", c.env)
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		var f serveFlags
		f.bind(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		if err != nil || cfg.AdaptProcs != c.want {
			t.Errorf("GOMAXPROCS=%q %v: %v, AdaptProcs %v; want %v", c.env, c.args, err, cfg.AdaptProcs, c.want)
		}
	}
}
