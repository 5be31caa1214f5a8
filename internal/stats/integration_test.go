package stats_test

// These tests run the real server (API, data plane, health checker, stats) on
// loopback: frontends in 127.0.93.0/24, backends on 127.0.94.x. They push a known
// amount of traffic through a NodeBalancer and check that the counters (/metrics),
// the /stats series and transfer all grew by it, and that series and transfer
// survive a restart.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/server"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

const token = "stats-integration-token-0123456789"

// metricsListen is /metrics' own address in the restart run; this test alone uses it.
const metricsListen = "127.0.95.1:9100"

// Small resolutions so the test sees samples in milliseconds, not seconds.
var (
	hourRes = stats.Resolution{Width: 100 * time.Millisecond, Buckets: 600}
	dayRes  = stats.Resolution{Width: time.Second, Buckets: 120}
)

type running struct {
	srv  *server.Server
	url  string
	lc   *linodego.Client
	stop func()
}

// start runs a server on dir until the test ends or stop is called.
func start(t *testing.T, dir string, tweak func(*server.Config)) *running {
	t.Helper()
	cfg := server.Config{
		Listen:         "127.0.0.1:0",
		DataDir:        dir,
		FrontendPool:   []netip.Prefix{netip.MustParsePrefix("127.0.93.0/24")},
		BackendRanges:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Region:         "local",
		BootstrapToken: token,
		ShutdownGrace:  2 * time.Second,
		MaxConns:       1000,
		Log:            slog.New(slog.DiscardHandler),
		Stats:          stats.Options{Hour: hourRes, Day: dayRes, PersistEvery: 200 * time.Millisecond},
		AccessLog:      filepath.Join(dir, "access.log"),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
	}
	t.Cleanup(stop)
	r := &running{srv: srv, url: "http://" + srv.Addr().String(), stop: stop}
	waitFor(t, "healthz", func() bool {
		resp, err := http.Get(r.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	c := linodego.NewClient(nil)
	c.SetBaseURL(r.url)
	c.SetAPIVersion("v4")
	c.SetToken(token)
	c.SetRetryCount(0)
	r.lc = &c
	return r
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpBackend answers every request with 1000 bytes after reading its body.
func httpBackend(t *testing.T, addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("b"), 1000)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(body)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// echoBackend sends back whatever it receives, then closes.
func echoBackend(t *testing.T, addr string) string {
	return testnet.ServeConns(t, addr, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	}).Addr().String()
}

// echoThrough sends n bytes through the tcp frontend and reads them back.
func echoThrough(t *testing.T, frontend string, n int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", frontend, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		c.Write(bytes.Repeat([]byte("x"), n))
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.Copy(io.Discard, c)
	if err != nil || got != int64(n) {
		t.Fatalf("echo through %s: %d bytes back, %v", frontend, got, err)
	}
}

// metrics scrapes url and returns the series by name with labels, as written.
func metrics(t *testing.T, url, tok string) (map[string]float64, int) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, resp.StatusCode
}

// key writes a series name with labels sorted, as the text format does.
func key(name string, kv ...string) string {
	var ps []string
	for i := 0; i < len(kv); i += 2 {
		ps = append(ps, fmt.Sprintf("%s=%q", kv[i], kv[i+1]))
	}
	sort.Strings(ps)
	return name + "{" + strings.Join(ps, ",") + "}"
}

// hourStats fetches the fine series through the API.
func hourStats(t *testing.T, r *running, id int) stats.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v4/nodebalancers/%d/stats?period=hour", r.url, id), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out stats.Response
	if resp.StatusCode != 200 {
		t.Fatalf("stats?period=hour: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// integral turns a series of per-second rates in buckets of width w back into the
// count it was made from (the last bucket taken as whole).
func integral(pts [][]float64, w time.Duration, perUnit float64) float64 {
	var sum float64
	for _, p := range pts {
		sum += p[1] * w.Seconds() / perUnit
	}
	return sum
}

func pts(p []stats.Point) [][]float64 {
	out := make([][]float64, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestTrafficShowsInCountersStatsTransferAndMetricsAlike(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, nil)
	ctx := context.Background()
	web := httpBackend(t, "127.0.94.1:0")
	echo := echoBackend(t, "127.0.94.2:0")

	label := "stats-lb"
	nb, err := r.lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Label: &label, Region: "local",
		Configs: []*linodego.NodeBalancerConfigCreateOptions{
			{Port: 8080, Protocol: linodego.ProtocolHTTP, Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: web, Label: "web-1", Weight: 50}}},
			{Port: 9000, Protocol: linodego.ProtocolTCP, Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: echo, Label: "echo-1", Weight: 50}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	httpFront, tcpFront := *nb.IPv4+":8080", *nb.IPv4+":9000"
	probes := map[string]float64{}
	waitFor(t, "listeners", func() bool {
		for _, a := range []string{httpFront, tcpFront} {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return false
			}
			probes[a]++
			c.Close()
		}
		return true
	})
	// The probes above were connections too, and a dial completes from the kernel's
	// backlog before the balancer accepts it: wait until each probe has been counted
	// and has ended, then measure growth from there.
	var base map[string]float64
	waitFor(t, "the probes counted and ended", func() bool {
		base, _ = metrics(t, r.url+"/metrics", "")
		for a, port := range map[string]string{httpFront: "8080", tcpFront: "9000"} {
			l := []string{"nodebalancer", label, "config_port", port}
			if base[key("nodebalancer_config_connections_total", l...)] != probes[a] ||
				base[key("nodebalancer_config_active_connections", l...)] != 0 {
				return false
			}
		}
		return true
	})

	const requests, reqBody = 40, 2000
	const tcpConns, tcpBytes = 5, 1 << 20
	hc := &http.Client{Timeout: 10 * time.Second}
	for range requests {
		resp, err := hc.Post("http://"+httpFront+"/x", "application/octet-stream", bytes.NewReader(make([]byte, reqBody)))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != 1000 {
			t.Fatalf("request: %d, %d bytes", resp.StatusCode, n)
		}
	}
	hc.CloseIdleConnections()
	for range tcpConns {
		echoThrough(t, tcpFront, tcpBytes)
	}

	nbL := []string{"nodebalancer", label}
	httpL := append(nbL[:2:2], "config_port", "8080")
	tcpL := append(nbL[:2:2], "config_port", "9000")
	var m map[string]float64
	grew := func(name string, labels ...string) float64 { k := key(name, labels...); return m[k] - base[k] }
	waitFor(t, "every request counted", func() bool {
		m, _ = metrics(t, r.url+"/metrics", "")
		return grew("nodebalancer_requests_total", nbL...) == requests
	})

	// The counters grew by what was pushed.
	exact := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"nodebalancer_config_requests_total", httpL, requests},
		{"nodebalancer_config_responses_total", append(httpL, "class", "2xx"), requests},
		{"nodebalancer_node_requests_total", append(httpL, "node", "web-1", "node_id", "1"), requests},
		{"nodebalancer_config_connections_total", tcpL, tcpConns},
		{"nodebalancer_config_bytes_total", append(tcpL, "direction", "in"), tcpConns * tcpBytes},
		{"nodebalancer_config_bytes_total", append(tcpL, "direction", "out"), tcpConns * tcpBytes},
		{"nodebalancer_node_bytes_total", append(tcpL, "direction", "in", "node", "echo-1", "node_id", "2"), tcpConns * tcpBytes},
		{"nodebalancer_node_connections_total", append(tcpL, "node", "echo-1", "node_id", "2"), tcpConns},
	}
	for _, e := range exact {
		if got := grew(e.name, e.labels...); got != e.want {
			t.Errorf("%s %v grew by %v, want %v", e.name, e.labels, got, e.want)
		}
	}
	if _, ok := m[key("nodebalancer_node_up", append(tcpL, "node", "echo-1", "node_id", "2")...)]; !ok {
		t.Errorf("nodebalancer_node_up of echo-1 missing")
	}
	httpIn := grew("nodebalancer_config_bytes_total", append(httpL, "direction", "in")...)
	httpOut := grew("nodebalancer_config_bytes_total", append(httpL, "direction", "out")...)
	if httpIn < requests*reqBody || httpOut < requests*1000 {
		t.Errorf("http bytes in %v out %v, want at least the bodies %d %d", httpIn, httpOut, requests*reqBody, requests*1000)
	}
	// The NodeBalancer is the sum of its configs.
	nbIn, nbOut := grew("nodebalancer_bytes_total", append(nbL, "direction", "in")...), grew("nodebalancer_bytes_total", append(nbL, "direction", "out")...)
	if nbIn != httpIn+tcpConns*tcpBytes || nbOut != httpOut+tcpConns*tcpBytes {
		t.Errorf("nodebalancer bytes in %v out %v, want %v %v", nbIn, nbOut, httpIn+tcpConns*tcpBytes, httpOut+tcpConns*tcpBytes)
	}
	totalIn := m[key("nodebalancer_bytes_total", append(nbL, "direction", "in")...)]
	totalOut := m[key("nodebalancer_bytes_total", append(nbL, "direction", "out")...)]
	totalConns := m[key("nodebalancer_connections_total", nbL...)]
	if grew("nodebalancer_connections_total", nbL...) < tcpConns+1 {
		t.Errorf("nodebalancer connections grew by %v", grew("nodebalancer_connections_total", nbL...))
	}

	// transfer is exact to the byte, and so is its Prometheus twin.
	got, err := r.lc.GetNodeBalancer(ctx, nb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Transfer.In*(1<<20) != totalIn || *got.Transfer.Out*(1<<20) != totalOut || !near(*got.Transfer.Total, (totalIn+totalOut)/(1<<20)) {
		t.Errorf("transfer %v/%v/%v MB, counters %v/%v bytes", *got.Transfer.In, *got.Transfer.Out, *got.Transfer.Total, totalIn, totalOut)
	}
	if v := m[key("nodebalancer_transfer_month_bytes", append(nbL, "direction", "in")...)]; v != totalIn {
		t.Errorf("nodebalancer_transfer_month_bytes in %v, want %v", v, totalIn)
	}

	// The hour series integrates back to the counters once a sample has passed.
	waitFor(t, "hour series to hold every byte", func() bool {
		h := hourStats(t, r, nb.ID)
		return near(integral(pts(h.Data.Traffic.In), hourRes.Width, 8), totalIn) &&
			near(integral(pts(h.Data.Traffic.Out), hourRes.Width, 8), totalOut) &&
			near(integral(pts(h.Data.Connections), hourRes.Width, 1), totalConns)
	})
	// So does the day series, through linodego, once its buckets are complete.
	waitFor(t, "day series to hold every byte", func() bool {
		d, err := r.lc.GetNodeBalancerStats(ctx, nb.ID)
		if err != nil {
			t.Fatal(err)
		}
		return near(integral(d.Data.Traffic.In, dayRes.Width, 8), totalIn) &&
			near(integral(d.Data.Traffic.Out, dayRes.Width, 8), totalOut) &&
			near(integral(d.Data.Connections, dayRes.Width, 1), totalConns) &&
			strings.Contains(d.Title, label)
	})
	hourBefore := hourStats(t, r, nb.ID)

	// Restart on the same data directory, /metrics on its own address behind a token.
	r.stop()
	lines := accessLines(t, filepath.Join(dir, "access.log"))
	var tcpLines, httpLines int
	for _, l := range lines {
		switch {
		case l["proto"] == "tcp" && l["config_id"] == 2.0 && l["bytes_in"] == float64(tcpBytes) && l["bytes_out"] == float64(tcpBytes):
			tcpLines++
		case l["proto"] == "http" && l["method"] == "POST" && l["status"] == 200.0:
			httpLines++
		}
	}
	if tcpLines != tcpConns || httpLines != requests {
		t.Errorf("access log: %d tcp lines of %d bytes, %d http POST lines; want %d and %d", tcpLines, tcpBytes, httpLines, tcpConns, requests)
	}

	r2 := start(t, dir, func(c *server.Config) { c.MetricsListen, c.MetricsToken = metricsListen, true })
	got, err = r2.lc.GetNodeBalancer(ctx, nb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Transfer.In*(1<<20) != totalIn || *got.Transfer.Out*(1<<20) != totalOut {
		t.Errorf("transfer after restart %v/%v MB, want %v/%v bytes", *got.Transfer.In, *got.Transfer.Out, totalIn, totalOut)
	}
	h := hourStats(t, r2, nb.ID)
	if !near(integral(pts(h.Data.Traffic.In), hourRes.Width, 8), totalIn) || !near(integral(pts(h.Data.Connections), hourRes.Width, 1), totalConns) ||
		len(h.Data.Traffic.In) < len(hourBefore.Data.Traffic.In) || h.Data.Traffic.In[0] != hourBefore.Data.Traffic.In[0] {
		t.Errorf("hour series after restart: %d points from %v, before %d from %v", len(h.Data.Traffic.In), h.Data.Traffic.In[0],
			len(hourBefore.Data.Traffic.In), hourBefore.Data.Traffic.In[0])
	}

	murl := "http://" + metricsListen + "/metrics"
	if _, code := metrics(t, murl, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d", code)
	}
	if _, code := metrics(t, r2.url+"/metrics", token); code != http.StatusNotFound {
		t.Errorf("/metrics still on the API listener: %d", code)
	}
	waitFor(t, "frontend after restart", func() bool {
		c, err := net.Dial("tcp", tcpFront)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	echoThrough(t, tcpFront, tcpBytes)
	waitFor(t, "transfer to count traffic after the restart", func() bool {
		got, err = r2.lc.GetNodeBalancer(ctx, nb.ID)
		return err == nil && *got.Transfer.In*(1<<20) == totalIn+tcpBytes
	})
	m2, code := metrics(t, murl, token)
	if code != 200 || m2[key("nodebalancer_transfer_month_bytes", append(nbL, "direction", "in")...)] != totalIn+tcpBytes ||
		m2[key("nodebalancer_config_bytes_total", append(tcpL, "direction", "in")...)] != tcpBytes {
		t.Errorf("metrics after restart (%d): transfer %v, tcp bytes %v", code,
			m2[key("nodebalancer_transfer_month_bytes", append(nbL, "direction", "in")...)],
			m2[key("nodebalancer_config_bytes_total", append(tcpL, "direction", "in")...)])
	}
}

func accessLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestUDPTrafficShowsInSeriesMetricsAndAccessLog: udp sessions count as connections and
// their payload bytes as traffic, in /metrics (down to the node), the hour series and
// transfer, and each ended session writes one access log line.
func TestUDPTrafficShowsInSeriesMetricsAndAccessLog(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, func(c *server.Config) { c.UDPSessionTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	echo := testnet.ServeUDPEcho(t, "u", "127.0.94.3:0")
	label := "udp-stats"
	nb, err := r.lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Label: &label, Region: "local",
		Configs: []*linodego.NodeBalancerConfigCreateOptions{{Port: 5353, Protocol: "udp",
			Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: echo.Addr().String(), Label: "udp-1", Weight: 50}}}}})
	if err != nil {
		t.Fatal(err)
	}
	front := netip.MustParseAddrPort(*nb.IPv4 + ":5353")
	ask := func(c *net.UDPConn, msg []byte) bool {
		c.WriteToUDPAddrPort(msg, front)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 2048)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		return err == nil && n == len(msg)
	}
	clients := make([]*net.UDPConn, 5)
	for i := range clients {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 95, byte(1+i))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	waitFor(t, "the udp config to answer", func() bool { return ask(clients[0], make([]byte, 1000)) })
	for _, c := range clients[1:] {
		if !ask(c, make([]byte, 1000)) {
			t.Fatal("no reply")
		}
	}
	for _, c := range clients {
		for range 2 {
			if !ask(c, make([]byte, 1000)) {
				t.Fatal("no reply")
			}
		}
	}
	// Every datagram arrived, but the first client's probes may have been more than one.
	// A batch's bytes are counted just after it is sent: wait until the counts settle.
	nbL := []string{"nodebalancer", label}
	var in, out, nodeIn, sessions float64
	waitFor(t, "the counters to settle", func() bool {
		m, _ := metrics(t, r.url+"/metrics", "")
		in = m[key("nodebalancer_bytes_total", append(nbL, "direction", "in")...)]
		out = m[key("nodebalancer_bytes_total", append(nbL, "direction", "out")...)]
		sessions = m[key("nodebalancer_connections_total", nbL...)]
		nodeIn = 0
		for k, v := range m {
			if strings.HasPrefix(k, "nodebalancer_node_bytes_total") && strings.Contains(k, `direction="in"`) {
				nodeIn += v
			}
		}
		return in >= 15000 && int(in)%1000 == 0 && out == in && nodeIn == in
	})
	if sessions != 5 {
		t.Errorf("%v sessions counted, want 5", sessions)
	}
	waitFor(t, "the sessions to end", func() bool {
		m, _ := metrics(t, r.url+"/metrics", "")
		return m[key("nodebalancer_active_connections", nbL...)] == 0
	})
	waitFor(t, "the hour series to hold every byte and session", func() bool {
		h := hourStats(t, r, nb.ID)
		return near(integral(pts(h.Data.Traffic.In), hourRes.Width, 8), in) && near(integral(pts(h.Data.Connections), hourRes.Width, 1), 5)
	})
	got, err := r.lc.GetNodeBalancer(ctx, nb.ID)
	if err != nil || *got.Transfer.In*(1<<20) != in {
		t.Errorf("transfer in %v MB, want %v bytes (%v)", *got.Transfer.In, in, err)
	}
	r.stop()
	udpLines := 0
	for _, l := range accessLines(t, filepath.Join(dir, "access.log")) {
		if l["proto"] == "udp" && l["end"] == "idle" && l["datagrams_in"] == l["datagrams_out"] && l["bytes_in"] == l["bytes_out"] {
			udpLines++
		}
	}
	if udpLines != 5 {
		t.Errorf("%d udp access log lines, want 5", udpLines)
	}
}
