package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/server"
)

// demoFlags are the flags of `demo`.
type demoFlags struct {
	listen, pool string
	port         int
	burst        int
	watch        time.Duration
}

func newDemoCommand() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a balancer with three demo backends and show it balancing",
		Long: `Start nodebalancer on the embedded store in a temporary directory, start three
small HTTP backends on loopback, create a NodeBalancer with an http config
(roundrobin, http health check) and the three backends as nodes with weights
1, 1 and 2 through the API, send a burst of requests and show how they spread.

It keeps running until Ctrl-C, printing how the last requests spread every few
seconds, so you can change a node (set it to drain, re-weight it) with the CLI
or the console and watch the effect. Everything is removed on exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "API address; a free port is used when it is busy")
	fl.StringVar(&f.pool, "frontend-pool", "127.0.3.0/24", "CIDR the demo NodeBalancer's address comes from")
	fl.IntVar(&f.port, "port", 8000, "frontend port of the demo http config")
	fl.IntVar(&f.burst, "requests", 100, "requests in the first burst")
	fl.DurationVar(&f.watch, "watch", 2*time.Second, "how often to send 20 requests and print their spread (0: never)")
	return cmd
}

func runDemo(cmd *cobra.Command, f demoFlags) error {
	out := cmd.OutOrStdout()
	pool, err := netip.ParsePrefix(f.pool)
	if err != nil || !pool.Addr().Is4() {
		return usageErrorf("--frontend-pool: %q is not an IPv4 CIDR such as 127.0.3.0/24", f.pool)
	}
	if f.port < 1 || f.port > 65535 {
		return usageErrorf("--port must be between 1 and 65535")
	}
	if f.burst < 1 {
		return usageErrorf("--requests must be at least 1")
	}
	ctx := cmd.Context()
	dir, err := os.MkdirTemp("", "nodebalancer-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	backends, stopBackends, err := startDemoBackends()
	if err != nil {
		return err
	}
	defer stopBackends()

	cfg := server.Config{
		Listen: f.listen, DataDir: dir, FrontendPool: []netip.Prefix{pool.Masked()},
		BackendRanges: model.DefaultBackendRanges(), Region: demoRegion, ShutdownGrace: 2 * time.Second,
		Log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	s, err := server.New(cfg)
	if err != nil && f.listen != "" {
		var opErr *net.OpError
		if errors.As(err, &opErr) { // the address is busy: take any free port
			cfg.Listen = "127.0.0.1:0"
			s, err = server.New(cfg)
		}
	}
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()

	apiURL := "http://" + s.Addr().String()
	c, err := newClient(apiURL, s.Token)
	if err != nil {
		return err
	}
	if err := waitHealthy(ctx, apiURL); err != nil {
		return err
	}
	frontend, err := createDemoNodeBalancer(ctx, c, f.port, backends)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "nodebalancer demo is running (Ctrl-C to stop)\n\n")
	fmt.Fprintf(out, "  frontend  %s\n", frontend)
	fmt.Fprintf(out, "  API       %s/v4\n", apiURL)
	fmt.Fprintf(out, "  console   %s/\n", apiURL)
	fmt.Fprintf(out, "  token     %s\n\n", s.Token)
	fmt.Fprintf(out, "  export NODEBALANCER_URL=%s NODEBALANCER_TOKEN=%s\n", apiURL, s.Token)
	fmt.Fprintf(out, "  nodebalancer nodebalancers nodes-list 1 1\n")
	fmt.Fprintf(out, "  nodebalancer nodebalancers node-update 1 1 3 --mode drain\n\n")

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tally, failed := spread(ctx, client, frontend, f.burst)
	fmt.Fprintf(out, "%d requests to %s (weights 1, 1, 2):\n%s", f.burst, frontend, formatSpread(tally, failed, f.burst))
	if f.watch <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(f.watch)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping")
			return nil
		case <-t.C:
			tally, failed := spread(ctx, client, frontend, 20)
			if ctx.Err() != nil {
				continue
			}
			fmt.Fprintf(out, "%s last 20: %s", time.Now().Format("15:04:05"), strings.ReplaceAll(formatSpread(tally, failed, 20), "\n  ", "  "))
		}
	}
}

// startDemoBackends starts three HTTP servers on distinct loopback addresses, each
// answering with its name.
func startDemoBackends() ([]string, func(), error) {
	var addrs []string
	var servers []*http.Server
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.2.%d:0", i))
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("start demo backend %d: %w", i, err)
		}
		name := fmt.Sprintf("backend-%d", i)
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s\n", name)
		})}
		go srv.Serve(ln)
		servers = append(servers, srv)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, stop, nil
}

func waitHealthy(ctx context.Context, apiURL string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(apiURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server at %s did not become ready", apiURL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// demoRegion is the region the demo server serves and its NodeBalancer is created in.
const demoRegion = "local"

// createDemoNodeBalancer creates the demo NodeBalancer through the API, waits for its
// nodes to be UP, and returns the frontend URL.
func createDemoNodeBalancer(ctx context.Context, c *client, port int, backends []string) (string, error) {
	nodes := []map[string]any{}
	for i, b := range backends {
		nodes = append(nodes, map[string]any{"label": fmt.Sprintf("backend-%d", i+1), "address": b, "weight": []int{1, 1, 2}[i]})
	}
	body := map[string]any{
		"label": "demo", "region": demoRegion,
		"configs": []map[string]any{{
			"port": port, "protocol": "http", "algorithm": "roundrobin",
			"check": "http", "check_path": "/", "check_interval": 5, "check_timeout": 2, "check_attempts": 2,
			"nodes": nodes,
		}},
	}
	raw, err := c.do(ctx, http.MethodPost, "/nodebalancers", body)
	if err != nil {
		return "", err
	}
	var nb struct {
		ID   int    `json:"id"`
		IPv4 string `json:"ipv4"`
	}
	if err := json.Unmarshal(raw, &nb); err != nil {
		return "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cfgs, err := c.list(ctx, configsPath(nb.ID))
		if err != nil {
			return "", err
		}
		var cfg struct {
			NodesStatus struct{ Up int } `json:"nodes_status"`
		}
		if len(cfgs) == 1 && json.Unmarshal(cfgs[0], &cfg) == nil && cfg.NodesStatus.Up == len(backends) {
			break
		}
		if time.Now().After(deadline) {
			return "", errors.New("the demo nodes did not come UP within 10 s")
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Sprintf("http://%s:%d/", nb.IPv4, port), nil
}

// spread sends n requests, each on a new connection like n different clients, and
// counts the answers by backend name.
func spread(ctx context.Context, client *http.Client, url string, n int) (map[string]int, int) {
	tally := map[string]int{}
	failed := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			failed++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
			continue
		}
		tally[strings.TrimSpace(string(b))]++
	}
	return tally, failed
}

func formatSpread(tally map[string]int, failed, n int) string {
	names := make([]string, 0, len(tally))
	for name := range tally {
		names = append(names, name)
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, name := range names {
		fmt.Fprintf(&sb, "  %s %3d (%.0f%%)", name, tally[name], 100*float64(tally[name])/float64(n))
		sb.WriteString("\n")
	}
	if failed > 0 {
		fmt.Fprintf(&sb, "  failed %3d\n", failed)
	}
	return sb.String()
}
