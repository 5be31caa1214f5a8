// Command scale measures how nodebalancer's costs grow with the size of its state
// (issue 13): a node-mode change reaching the data plane, server CPU per change, API
// write latency and changes per second (from one client, then from -writers clients
// at once), start-up until every listener accepts,
// /metrics time and size, goroutines and RSS — at 100 nodes, 10,000 and 50,000 nodes
// (NodeBalancers of 1,000 nodes, check none), 2,000 configs (200 NodeBalancers × 10
// ports) and one premium config of 2,000 nodes. With -health it measures the CPU
// time per active health check of 1,000 real loopback nodes at interval 2 s, beside
// HAProxy checking the same nodes with inter 2s.
//
// It runs the real binary (built from this module unless -bin is given) and talks to
// it only over loopback: frontends in 127.0.231.0/24, the probe backend on
// 127.0.232.1, the health-check nodes on 127.0.234.0/24; every other node address is
// loopback data in a check-none config that no traffic reaches. Every phase has a
// deadline and the whole run stops by itself (-timeout).
//
//	go run ./bench/scale                            the state-size scenarios, a markdown table on stdout
//	go run ./bench/scale -health                    and the health-check CPU comparison
//	go run ./bench/scale -only 50k -changes 400     one scenario
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	token      = "scale-bench-token-0123456789abcdef"
	apiAddr    = "127.0.0.1:18580"
	frontPool  = "127.0.231.0/24"
	probeAddrA = "127.0.232.1:9700"
)

// scenario is one state size.
type scenario struct {
	name      string
	nbs       int // NodeBalancers besides the probe's
	configs   int // configs per NodeBalancer
	nodes     int // nodes per config
	probeSize int // nodes in the probed config
	premium   bool
}

func (s scenario) totalNodes() int { return s.nbs*s.configs*s.nodes + s.probeSize }

func (s scenario) totalConfigs() int { return s.nbs*s.configs + 1 }

// noAgg skips the restart with --metrics-node-series=false.
var noAgg bool

// keepData, when set, is where the scenarios' data directories go and stay.
var keepData string

// writers is how many API clients write at once in the concurrent phase (1: none).
var writers int

var scenarios = []scenario{
	{name: "100", nbs: 0, configs: 1, nodes: 0, probeSize: 100},
	{name: "10k", nbs: 9, configs: 1, nodes: 1000, probeSize: 1000},
	{name: "50k", nbs: 49, configs: 1, nodes: 1000, probeSize: 1000},
	{name: "2000cfg", nbs: 200, configs: 10, nodes: 1, probeSize: 1},
	{name: "premium2000", nbs: 0, configs: 1, nodes: 0, probeSize: 2000, premium: true},
}

func main() {
	bin := flag.String("bin", "", "nodebalancer binary (default: go build ./cmd/nodebalancer)")
	only := flag.String("only", "", "comma-separated scenarios: "+names())
	changes := flag.Int("changes", 200, "mode changes measured per scenario")
	health := flag.Bool("health", false, "also compare health-check CPU with HAProxy (needs haproxy)")
	noStates := flag.Bool("no-states", false, "skip the state-size scenarios")
	flag.BoolVar(&noAgg, "no-agg", false, "skip the scrape with --metrics-node-series=false (for binaries without the flag)")
	timeout := flag.Duration("timeout", 20*time.Minute, "stop everything after this long")
	flag.IntVar(&writers, "writers", 8, "API clients changing nodes at once in the concurrent phase (1 skips it)")
	flag.StringVar(&keepData, "keep-data", "", "keep each scenario's data directory under this directory (to profile a server on it)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *bin, *only, *changes, *health, *noStates); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func names() string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return strings.Join(out, ",")
}

func run(ctx context.Context, bin, only string, changes int, health, noStates bool) error {
	tmp, err := os.MkdirTemp("", "nbscale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if bin == "" {
		bin = filepath.Join(tmp, "nodebalancer")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/nodebalancer")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	if !noStates {
		backend, err := serveName(probeAddrA, "A")
		if err != nil {
			return err
		}
		defer backend.Close()
		var rows []result
		for _, s := range scenarios {
			if only != "" && !slices.Contains(strings.Split(only, ","), s.name) {
				continue
			}
			fmt.Fprintf(os.Stderr, "scenario %s: %d nodes, %d configs\n", s.name, s.totalNodes(), s.totalConfigs())
			dir := filepath.Join(tmp, s.name)
			if keepData != "" {
				dir = filepath.Join(keepData, s.name)
			}
			r, err := measure(ctx, bin, dir, s, changes)
			if err != nil {
				return fmt.Errorf("scenario %s: %w", s.name, err)
			}
			rows = append(rows, r)
			printTable(os.Stdout, rows[len(rows)-1:])
		}
		fmt.Println()
		printTable(os.Stdout, rows)
	}
	if health {
		return healthCompare(ctx, bin, tmp)
	}
	return nil
}

// result is what one scenario measured.
type result struct {
	s                        scenario
	createFirst, createLast  time.Duration // POST /nodebalancers, median of the first and last 5
	createConfig             time.Duration // POST …/configs (no nodes) on the full state, median of 21
	changeP50, changeP99     time.Duration // API response → data plane, mode change of one node
	changeMax                time.Duration
	writeP50, writeP99       time.Duration // PUT node latency
	cpuPerChange             time.Duration // server CPU per change, back to back
	changesPerSec            float64
	parallelPerSec           float64       // with `writers` clients at once
	parallelP50, parallelP99 time.Duration // their write latency
	startListen, startHealth time.Duration // restart until every listener accepts / /healthz 200
	metricsTime              time.Duration
	metricsBytes             int64
	metricsAggTime           time.Duration // --metrics-node-series=false
	metricsAggBytes          int64
	goroutines               int
	rssMiB, rssAfterScrape   float64
}

// server is a running nodebalancer.
type server struct {
	cmd  *exec.Cmd
	done chan error
}

func start(ctx context.Context, bin, dir string, extra ...string) (*server, error) {
	args := append([]string{"serve", "--listen", apiAddr, "--data", dir, "--frontend-pool", frontPool,
		"--backend-cidrs", "127.0.0.0/8", "--log-level", "error", "--shutdown-grace", "1s"}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "NODEBALANCER_BOOTSTRAP_TOKEN="+token)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	return s, nil
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

var client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// api sends one request and decodes the answer into out (when not nil).
func api(method, path string, body, out any) (time.Duration, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+apiAddr+"/v4"+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	d := time.Since(t0)
	if err != nil {
		return d, err
	}
	if resp.StatusCode/100 != 2 {
		return d, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return d, json.Unmarshal(b, out)
	}
	return d, nil
}

func waitHealthy(ctx context.Context, limit time.Duration) (time.Duration, error) {
	t0 := time.Now()
	for time.Since(t0) < limit {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		resp, err := http.Get("http://" + apiAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(t0), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, errors.New("/healthz not ready")
}

type nodeJSON struct {
	Label   string `json:"label"`
	Address string `json:"address"`
	Mode    string `json:"mode,omitempty"`
	Weight  int    `json:"weight"`
}

type configJSON struct {
	Port     int        `json:"port"`
	Protocol string     `json:"protocol"`
	Check    string     `json:"check"`
	Nodes    []nodeJSON `json:"nodes"`
}

type nbJSON struct {
	ID     int    `json:"id"`
	Label  string `json:"label"`
	Region string `json:"region,omitempty"`
	IPv4   string `json:"ipv4"`
	Type   string `json:"type,omitempty"`

	Configs []configJSON `json:"configs,omitempty"`
}

// fillerNode is the address of node j of config c of NodeBalancer i: loopback, in a
// check-none config that no traffic reaches, unique across the state.
func fillerNode(i, c, j int) nodeJSON {
	n := (i*10+c)*1000 + j
	return nodeJSON{Label: fmt.Sprintf("node%d", j), Address: fmt.Sprintf("127.0.240.%d:%d", 1+n%250, 10000+n/250), Weight: 50}
}

// populate creates the scenario's state through the API; the probe NodeBalancer is
// created first. It returns the probe's ids and the create latencies.
func populate(s scenario) (probe nbJSON, cfgID, nodeID int, creates []time.Duration, err error) {
	pc := configJSON{Port: 80, Protocol: "tcp", Check: "none",
		Nodes: []nodeJSON{{Label: "probe-a", Address: probeAddrA, Mode: "accept", Weight: 50}}}
	for j := 1; j < s.probeSize; j++ {
		n := fillerNode(999, 0, j)
		n.Mode = "drain" // eligible only for sticky clients: never reached
		pc.Nodes = append(pc.Nodes, n)
	}
	req := nbJSON{Label: "probe", Region: "local", Configs: []configJSON{pc}}
	if s.premium {
		req.Type = "premium"
	}
	d, err := api("POST", "/nodebalancers", req, &probe)
	if err != nil {
		return probe, 0, 0, nil, err
	}
	creates = append(creates, d)
	for i := range s.nbs {
		req := nbJSON{Label: fmt.Sprintf("filler-%d", i), Region: "local"}
		for c := range s.configs {
			cf := configJSON{Port: 80 + c, Protocol: "tcp", Check: "none"}
			for j := range s.nodes {
				cf.Nodes = append(cf.Nodes, fillerNode(i, c, j))
			}
			req.Configs = append(req.Configs, cf)
		}
		d, err := api("POST", "/nodebalancers", req, nil)
		if err != nil {
			return probe, 0, 0, nil, err
		}
		creates = append(creates, d)
	}
	var cfgs struct {
		Data []struct {
			ID int `json:"id"`
		} `json:"data"`
	}
	if _, err := api("GET", fmt.Sprintf("/nodebalancers/%d/configs", probe.ID), nil, &cfgs); err != nil {
		return probe, 0, 0, nil, err
	}
	cfgID = cfgs.Data[0].ID
	var nodes struct {
		Data []struct {
			ID    int    `json:"id"`
			Label string `json:"label"`
		} `json:"data"`
	}
	if _, err := api("GET", fmt.Sprintf("/nodebalancers/%d/configs/%d/nodes?page_size=25", probe.ID, cfgID), nil, &nodes); err != nil {
		return probe, 0, 0, nil, err
	}
	for _, n := range nodes.Data {
		if n.Label == "probe-a" {
			nodeID = n.ID
		}
	}
	return probe, cfgID, nodeID, creates, nil
}

// configCreates creates (and deletes again) a config without nodes on NodeBalancer
// nbID n times, and returns the median create latency: the write that checks no
// stored node points at the frontend it opens.
func configCreates(nbID, n int) (time.Duration, error) {
	var ds []time.Duration
	for range n {
		var c struct {
			ID int `json:"id"`
		}
		d, err := api("POST", fmt.Sprintf("/nodebalancers/%d/configs", nbID), configJSON{Port: 81, Protocol: "tcp", Check: "none"}, &c)
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
		if _, err := api("DELETE", fmt.Sprintf("/nodebalancers/%d/configs/%d", nbID, c.ID), nil, nil); err != nil {
			return 0, err
		}
	}
	return median(ds), nil
}

// served reports whether a new connection to addr is answered by backend A (true) or
// closed without an answer (false).
func served(addr string) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 1)
	n, _ := c.Read(b)
	return n == 1 && b[0] == 'A', nil
}

// changeLatency sets the probe node's mode and returns the API latency and the time
// from the API's answer until a new connection shows the change.
func changeLatency(ctx context.Context, addr, path, mode string) (write, apply time.Duration, err error) {
	d, err := api("PUT", path, map[string]string{"mode": mode}, nil)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	want := mode == "accept"
	for time.Since(t0) < 10*time.Second {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		ok, err := served(addr)
		if err != nil {
			return 0, 0, err
		}
		if ok == want {
			return d, time.Since(t0), nil
		}
	}
	return 0, 0, fmt.Errorf("mode %s not applied within 10 s", mode)
}

func measure(ctx context.Context, bin, dir string, s scenario, changes int) (result, error) {
	r := result{s: s}
	srv, err := start(ctx, bin, dir)
	if err != nil {
		return r, err
	}
	defer func() {
		if srv != nil {
			srv.stop()
		}
	}()
	if _, err := waitHealthy(ctx, 30*time.Second); err != nil {
		return r, err
	}
	probe, cfgID, nodeID, creates, err := populate(s)
	if err != nil {
		return r, err
	}
	r.createFirst, r.createLast = median(creates[:min(5, len(creates))]), median(creates[max(0, len(creates)-5):])
	if r.createConfig, err = configCreates(probe.ID, 21); err != nil {
		return r, err
	}
	addr := probe.IPv4 + ":80"
	path := fmt.Sprintf("/nodebalancers/%d/configs/%d/nodes/%d", probe.ID, cfgID, nodeID)

	// Restart: start-up until every listener accepts.
	srv.stop()
	srv = nil
	t0 := time.Now()
	if srv, err = start(ctx, bin, dir); err != nil {
		return r, err
	}
	var nbs struct {
		Data []nbJSON `json:"data"`
	}
	listeners := listenerAddrs(s, probe.IPv4)
	r.startListen, err = waitListening(ctx, listeners, t0)
	if err != nil {
		return r, err
	}
	if _, err = waitHealthy(ctx, 30*time.Second); err != nil {
		return r, err
	}
	r.startHealth = time.Since(t0) // from exec, as startListen
	if _, err := api("GET", "/nodebalancers?page_size=500", nil, &nbs); err != nil {
		return r, err
	}
	if len(nbs.Data) != s.nbs+1 {
		return r, fmt.Errorf("%d NodeBalancers after restart, want %d", len(nbs.Data), s.nbs+1)
	}
	if ok, err := served(addr); err != nil || !ok {
		return r, fmt.Errorf("probe not served by A after restart: %v", err)
	}

	// Mode changes, one at a time, each waited for.
	var writes, applies []time.Duration
	for i := range changes {
		mode := "reject"
		if i%2 == 1 {
			mode = "accept"
		}
		w, a, err := changeLatency(ctx, addr, path, mode)
		if err != nil {
			return r, err
		}
		writes, applies = append(writes, w), append(applies, a)
	}
	if changes%2 == 1 {
		if _, _, err := changeLatency(ctx, addr, path, "accept"); err != nil {
			return r, err
		}
	}
	r.writeP50, r.writeP99 = pct(writes, 50), pct(writes, 99)
	r.changeP50, r.changeP99, r.changeMax = pct(applies, 50), pct(applies, 99), slices.Max(applies)

	// Back to back: server CPU per change and changes per second (weights, so the
	// probe keeps being served).
	cpu0 := cpuTime(srv.cmd.Process.Pid)
	t1 := time.Now()
	for i := range changes {
		if _, err := api("PUT", path, map[string]int{"weight": 40 + i%2}, nil); err != nil {
			return r, err
		}
	}
	elapsed := time.Since(t1)
	time.Sleep(200 * time.Millisecond) // the last changes reach the data plane
	r.cpuPerChange = (cpuTime(srv.cmd.Process.Pid) - cpu0) / time.Duration(changes)
	r.changesPerSec = float64(changes) / elapsed.Seconds()
	if writers > 1 {
		if err := parallelWrites(&r, probe.ID, cfgID, changes); err != nil {
			return r, err
		}
	}

	time.Sleep(time.Second)
	r.rssMiB = rssMiB(srv.cmd.Process.Pid)
	size, d, g, err := scrape()
	if err != nil {
		return r, err
	}
	r.metricsTime, r.metricsBytes, r.goroutines = d, size, int(g)
	r.rssAfterScrape = rssMiB(srv.cmd.Process.Pid)

	if noAgg {
		return r, nil
	}
	srv.stop()
	if srv, err = start(ctx, bin, dir, "--metrics-node-series=false"); err != nil {
		return r, err
	}
	if _, err := waitHealthy(ctx, 30*time.Second); err != nil {
		return r, err
	}
	size, d, _, err = scrape()
	if err != nil {
		return r, err
	}
	r.metricsAggTime, r.metricsAggBytes = d, size
	return r, nil
}

// parallelWrites changes node weights of the probe config from `writers` clients at
// once, each its own node where the config has enough (changes in all), and records
// changes per second and the writes' latency.
func parallelWrites(r *result, nbID, cfgID, changes int) error {
	var nodes struct {
		Data []struct {
			ID int `json:"id"`
		} `json:"data"`
	}
	if _, err := api("GET", fmt.Sprintf("/nodebalancers/%d/configs/%d/nodes?page_size=%d", nbID, cfgID, max(25, writers)), nil, &nodes); err != nil {
		return err
	}
	if len(nodes.Data) == 0 {
		return errors.New("probe config has no nodes")
	}
	each := max(1, changes/writers)
	lat := make([][]time.Duration, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range writers {
		path := fmt.Sprintf("/nodebalancers/%d/configs/%d/nodes/%d", nbID, cfgID, nodes.Data[w%len(nodes.Data)].ID)
		wg.Go(func() {
			for i := range each {
				d, err := api("PUT", path, map[string]int{"weight": 60 + i%2}, nil)
				if err != nil {
					errs[w] = err
					return
				}
				lat[w] = append(lat[w], d)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	all := slices.Concat(lat...)
	r.parallelPerSec = float64(len(all)) / elapsed.Seconds()
	r.parallelP50, r.parallelP99 = pct(all, 50), pct(all, 99)
	return nil
}

func listenerAddrs(s scenario, probeIP string) []string {
	out := []string{probeIP + ":80"}
	// Filler NodeBalancers get the frontend addresses after the probe's, in order.
	ip := net.ParseIP(probeIP).To4()
	for i := range s.nbs {
		a := net.IPv4(ip[0], ip[1], ip[2], ip[3]+byte(i+1))
		for c := range s.configs {
			out = append(out, fmt.Sprintf("%s:%d", a, 80+c))
		}
	}
	return out
}

// waitListening dials every address, 32 at a time, until each has accepted once and
// returns the time since t0 when the last did.
func waitListening(ctx context.Context, addrs []string, t0 time.Time) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	work := make(chan string)
	done := make(chan time.Duration, len(addrs))
	for range 32 {
		go func() {
			for a := range work {
				for {
					c, err := net.DialTimeout("tcp", a, time.Second)
					if err == nil {
						c.Close()
						done <- time.Since(t0)
						break
					}
					if wctx.Err() != nil {
						done <- -1
						break
					}
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	go func() {
		defer close(work)
		for _, a := range addrs {
			select {
			case work <- a:
			case <-wctx.Done():
				return
			}
		}
	}()
	var last time.Duration
	for range addrs {
		select {
		case d := <-done:
			if d < 0 {
				return 0, errors.New("listeners not all accepting after 60 s")
			}
			last = max(last, d)
		case <-wctx.Done():
			return 0, errors.New("listeners not all accepting after 60 s")
		}
	}
	return last, nil
}

// scrape reads /metrics line by line (as a scraper would, without holding the whole
// answer) and returns its size, the time it took and the go_goroutines value.
func scrape() (size int64, d time.Duration, goroutines float64, err error) {
	t0 := time.Now()
	resp, err := client.Get("http://" + apiAddr + "/metrics")
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 256<<10)
	for {
		line, err := r.ReadSlice('\n')
		size += int64(len(line))
		if bytes.HasPrefix(line, []byte("go_goroutines ")) {
			goroutines, _ = strconv.ParseFloat(strings.TrimSpace(string(line[len("go_goroutines "):])), 64)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			return size, time.Since(t0), goroutines, nil
		}
		if err != nil {
			return size, 0, 0, err
		}
	}
}

// cpuTime is a process's user+system CPU time.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

func rssMiB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func median(ds []time.Duration) time.Duration { return pct(ds, 50) }

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }

func printTable(w io.Writer, rows []result) {
	fmt.Fprintln(w, "| state | nodes | configs | change → data plane p50 / p99 / max ms | API write p50 / p99 ms | server CPU per change ms | changes/s | changes/s, write p50 / p99 ms, concurrent writers | create NB first / last ms | start → all listeners ms | start → /healthz ms | /metrics s, MB | /metrics node series off s, MB | goroutines | RSS MiB (after scrape) | create config ms |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %d | %s / %s / %s | %s / %s | %s | %.0f | %.0f, %s / %s (%d) | %s / %s | %s | %s | %.2f, %.1f | %.3f, %.2f | %d | %.0f (%.0f) | %s |\n",
			r.s.name, r.s.totalNodes(), r.s.totalConfigs(), ms(r.changeP50), ms(r.changeP99), ms(r.changeMax),
			ms(r.writeP50), ms(r.writeP99), ms(r.cpuPerChange), r.changesPerSec, r.parallelPerSec, ms(r.parallelP50), ms(r.parallelP99), writers, ms(r.createFirst), ms(r.createLast),
			ms(r.startListen), ms(r.startHealth), r.metricsTime.Seconds(), float64(r.metricsBytes)/1e6,
			r.metricsAggTime.Seconds(), float64(r.metricsAggBytes)/1e6, r.goroutines, r.rssMiB, r.rssAfterScrape, ms(r.createConfig))
	}
}

// serveName serves a raw tcp backend on addr that writes name and closes.
func serveName(addr, name string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
	return ln, nil
}
