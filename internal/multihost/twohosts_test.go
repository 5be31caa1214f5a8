package multihost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/etcdtest"
)

// TestTwoHostsServeOneConfiguration runs two hosts, each in its own network
// namespace, on one etcd, and a client in a third: what is written through one host
// serves through the other, storms of creates through both leave no duplicate, the
// stats add up, and a host killed with SIGKILL leaves the other serving.
func TestTwoHostsServeOneConfiguration(t *testing.T) {
	skipShort(t)
	l := newLab(t, "a", "b")
	c := etcdtest.Start(t, 1, labGateway)
	backend(t, labGateway+":9001", "b1")
	hosts := map[string]*host{}
	start := func(id string) *host {
		return mustStartHost(t, l.ns[id], id, etcdArgs(c, "--listen", l.addr[id]+":8080",
			"--frontend-pool", labFrontend, "--backend-cidrs", labBackends, "--stats-persist-every", "500ms",
			"--etcd-timeout", "10s")...) // storms retry conflicts; a loaded CI machine is slow
	}
	for _, id := range []string{"a", "b"} {
		hosts[id] = start(id)
	}
	a, b := hosts["a"], hosts["b"]

	t.Run("CreatedOnAServesThroughB", func(t *testing.T) {
		l.via("b")
		var took []time.Duration
		for i := range 20 {
			nb, err := tcpNB(t, a, "prop"+strconv.Itoa(i), 80, labGateway+":9001")
			if err != nil {
				t.Fatalf("%v\n%s", err, a.log())
			}
			took = append(took, waitGreets(t, l.clientDial, *nb.IPv4+":80", "b1"))
		}
		slices.Sort(took)
		p50, p99 := took[len(took)/2], took[len(took)*99/100]
		t.Logf("propagation A→B over %d NodeBalancers: p50 %v, p99 %v, max %v", len(took), p50, p99, took[len(took)-1])
		if p99 > time.Second {
			t.Fatalf("p99 propagation %v, over 1 s", p99)
		}
	})

	t.Run("NodeStatusIsTheSameOnBothHosts", func(t *testing.T) {
		label := "status"
		check := linodego.CheckConnection
		nb, err := a.lc.CreateNodeBalancer(context.Background(), linodego.NodeBalancerCreateOptions{
			Label: &label, Region: "local",
			Configs: []*linodego.NodeBalancerConfigCreateOptions{{
				Port: 81, Protocol: linodego.ProtocolTCP, Check: check, CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 1,
				Nodes: []linodego.NodeBalancerNodeCreateOptions{
					{Label: "alive", Address: labGateway + ":9001", Weight: 100, Mode: linodego.ModeAccept},
					{Label: "dead", Address: labGateway + ":9009", Weight: 100, Mode: linodego.ModeAccept},
				},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		cfgs, err := b.lc.ListNodeBalancerConfigs(context.Background(), nb.ID, nil)
		if err != nil || len(cfgs) != 1 {
			t.Fatal(cfgs, err)
		}
		want := map[string]string{"alive": "UP", "dead": "DOWN"}
		waitFor(t, 15*time.Second, "both hosts report alive UP and dead DOWN", func() bool {
			for _, h := range []*host{a, b} {
				nodes, err := h.lc.ListNodeBalancerNodes(context.Background(), nb.ID, cfgs[0].ID, nil)
				if err != nil || len(nodes) != 2 {
					return false
				}
				for _, n := range nodes {
					if n.Status != want[n.Label] {
						return false
					}
				}
			}
			return true
		})
	})

	t.Run("HostsDisagreeTheAPICombinesMetricsShowOwn", func(t *testing.T) {
		// 198.18.0.50 answers in the root namespace, but b's route to it is a
		// blackhole: a sees the node UP, b sees it DOWN.
		l.ip("addr", "add", "198.18.0.50/32", "dev", l.bridge)
		l.ip("-n", l.ns["b"], "route", "add", "blackhole", "198.18.0.50/32")
		backend(t, "198.18.0.50:9001", "split")
		label := "split"
		nb, err := a.lc.CreateNodeBalancer(context.Background(), linodego.NodeBalancerCreateOptions{
			Label: &label, Region: "local",
			Configs: []*linodego.NodeBalancerConfigCreateOptions{{
				Port: 85, Protocol: linodego.ProtocolTCP, Check: linodego.CheckConnection, CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 1,
				Nodes: []linodego.NodeBalancerNodeCreateOptions{{Label: "split-node", Address: "198.18.0.50:9001", Weight: 100, Mode: linodego.ModeAccept}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		metricUp := func(h *host) string {
			_, body, err := h.get("/metrics")
			if err != nil {
				return ""
			}
			for line := range strings.SplitSeq(body, "\n") {
				if strings.HasPrefix(line, "nodebalancer_node_up{") && strings.Contains(line, `node="split-node"`) {
					return line[strings.LastIndexByte(line, ' ')+1:]
				}
			}
			return ""
		}
		apiStatus := func(h *host) string {
			cfgs, err := h.lc.ListNodeBalancerConfigs(context.Background(), nb.ID, nil)
			if err != nil || len(cfgs) != 1 {
				return ""
			}
			nodes, err := h.lc.ListNodeBalancerNodes(context.Background(), nb.ID, cfgs[0].ID, nil)
			if err != nil || len(nodes) != 1 {
				return ""
			}
			return nodes[0].Status
		}
		// One UP, one DOWN: not a majority, so DOWN on both APIs; /metrics shows
		// each host's own view.
		waitFor(t, 15*time.Second, "a's /metrics UP, b's DOWN, both APIs DOWN", func() bool {
			return metricUp(a) == "1" && metricUp(b) == "0" && apiStatus(a) == "DOWN" && apiStatus(b) == "DOWN"
		})
	})

	t.Run("CreateStormsLeaveNoDuplicates", func(t *testing.T) {
		var mu sync.Mutex
		acked := map[int]string{}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 4 {
			h := []*host{a, b}[w%2]
			wg.Go(func() {
				for i := range 10 {
					label := fmt.Sprintf("storm-%d-%d", w, i)
					if i%2 == 0 {
						label = fmt.Sprintf("storm-shared-%d", i) // every writer asks for it
					}
					nb, err := tcpNB(t, h, label, 80, labGateway+":9001")
					var le *linodego.Error
					if errors.As(err, &le) && le.Code == http.StatusBadRequest && strings.Contains(le.Message, "already in use") {
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("%s: %w", h.id, err)
						return
					}
					mu.Lock()
					acked[nb.ID] = label
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, h := range []*host{a, b} {
			all, err := h.lc.ListNodeBalancers(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			ids, labels, addrs := map[int]bool{}, map[string]bool{}, map[string]bool{}
			for _, nb := range all {
				if ids[nb.ID] || labels[*nb.Label] || addrs[*nb.IPv4] {
					t.Fatalf("duplicate through %s: %d %s %s", h.id, nb.ID, *nb.Label, *nb.IPv4)
				}
				ids[nb.ID], labels[*nb.Label], addrs[*nb.IPv4] = true, true, true
			}
			for id, label := range acked {
				if !ids[id] || !labels[label] {
					t.Fatalf("acknowledged %d %s missing through %s", id, label, h.id)
				}
			}
		}
		if want := 4*5 + 5; len(acked) != want {
			t.Fatalf("%d creates acknowledged, want %d (each shared label once)", len(acked), want)
		}
	})

	t.Run("StatsAddUpAcrossHosts", func(t *testing.T) {
		nb, err := tcpNB(t, a, "stats", 82, labGateway+":9001")
		if err != nil {
			t.Fatal(err)
		}
		front := *nb.IPv4 + ":82"
		count := map[string]int{"a": 7, "b": 5}
		for _, id := range []string{"a", "b"} {
			l.via(id)
			waitGreets(t, l.clientDial, front, "b1")
			for range count[id] - 1 {
				if got, err := greet(l.clientDial, front); err != nil || got != "b1" {
					t.Fatalf("through %s: %q %v", id, got, err)
				}
			}
		}
		// Every connection carried "b1\n" (3 bytes) to the client.
		want := float64(3*(count["a"]+count["b"])) / (1 << 20)
		transferIs := func(h *host) bool {
			got, err := h.lc.GetNodeBalancer(context.Background(), nb.ID)
			return err == nil && got.Transfer.Out != nil && *got.Transfer.Out == want
		}
		waitFor(t, 10*time.Second, "transfer adds up through a and b", func() bool { return transferIs(a) && transferIs(b) })
		// A restarted host counts nothing twice and forgets nothing.
		a.stop(t)
		hosts["a"] = start("a")
		a = hosts["a"]
		waitFor(t, 10*time.Second, "transfer adds up after a restart", func() bool { return transferIs(a) && transferIs(b) })
	})

	t.Run("CookieFromAPinsOnB", func(t *testing.T) {
		for _, name := range []string{"h1", "h2"} {
			port := map[string]string{"h1": "9011", "h2": "9012"}[name]
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(name)) })}
			ln, err := net.Listen("tcp", labGateway+":"+port)
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
		}
		label := "sticky"
		nb, err := a.lc.CreateNodeBalancer(context.Background(), linodego.NodeBalancerCreateOptions{
			Label: &label, Region: "local",
			Configs: []*linodego.NodeBalancerConfigCreateOptions{{
				Port: 84, Protocol: linodego.ProtocolHTTP, Check: linodego.CheckNone, Stickiness: linodego.StickinessHTTPCookie,
				Nodes: []linodego.NodeBalancerNodeCreateOptions{
					{Label: "node-h1", Address: labGateway + ":9011", Weight: 100, Mode: linodego.ModeAccept},
					{Label: "node-h2", Address: labGateway + ":9012", Weight: 100, Mode: linodego.ModeAccept},
				},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: l.clientDial, DisableKeepAlives: true}}
		front := "http://" + *nb.IPv4 + ":84/"
		fetch := func(cookie *http.Cookie) (string, *http.Cookie, error) {
			req, _ := http.NewRequest(http.MethodGet, front, nil)
			if cookie != nil {
				req.AddCookie(cookie)
			}
			resp, err := client.Do(req)
			if err != nil {
				return "", nil, err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			for _, c := range resp.Cookies() {
				if c.Name == "NB_SRVID" {
					return string(b), c, nil
				}
			}
			return string(b), nil, nil
		}
		l.via("a")
		var first string
		var cookie *http.Cookie
		waitFor(t, 5*time.Second, "a cookie through a", func() bool {
			var err error
			first, cookie, err = fetch(nil)
			return err == nil && cookie != nil
		})
		l.via("b")
		// b learns the NodeBalancer through its etcd watch, a moment after a did.
		waitFor(t, 5*time.Second, "b to open the frontend", func() bool { _, _, err := fetch(cookie); return err == nil })
		for i := range 10 {
			got, _, err := fetch(cookie)
			if err != nil || got != first {
				t.Fatalf("request %d through b with a's cookie: %q %v, want %q", i, got, err, first)
			}
		}
		// Without the cookie b spreads clients over both nodes.
		seen := map[string]bool{}
		for range 10 {
			got, _, err := fetch(nil)
			if err != nil {
				t.Fatal(err)
			}
			seen[got] = true
		}
		if len(seen) != 2 {
			t.Fatalf("without a cookie: %v", seen)
		}
	})

	t.Run("TokenMadeOnAWorksOnB", func(t *testing.T) {
		label := "shared-token"
		tok, err := a.lc.CreateToken(context.Background(), linodego.TokenCreateOptions{Label: label, Scopes: "nodebalancers:read_only"})
		if err != nil {
			t.Fatal(err)
		}
		c := linodego.NewClient(&http.Client{Timeout: 10 * time.Second})
		c.SetBaseURL(b.url).SetAPIVersion("v4").SetToken(tok.Token)
		// b follows token writes with an etcd watch: the new token works there
		// within milliseconds, and a revocation through b counts on a as soon —
		// well before the token cache's own 2 s reload (1 s allows a loaded machine).
		waitFor(t, time.Second, "a's new token works on b", func() bool {
			_, err := c.ListNodeBalancers(context.Background(), nil)
			return err == nil
		})
		if _, err := a.lc.ListNodeBalancers(context.Background(), nil); err != nil { // a's cache is fresh
			t.Fatal(err)
		}
		c.SetBaseURL(a.url)
		if _, err := c.ListNodeBalancers(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if err := b.lc.DeleteToken(context.Background(), tok.ID); err != nil {
			t.Fatal(err)
		}
		var le *linodego.Error
		waitFor(t, time.Second, "the token revoked on b is refused on a", func() bool {
			_, err := c.ListNodeBalancers(context.Background(), nil)
			return errors.As(err, &le) && le.Code == http.StatusUnauthorized
		})
	})

	t.Run("ClusterStatus", func(t *testing.T) {
		var body string
		// a restarted just now: wait for a heartbeat that carries its applied revision.
		waitFor(t, 10*time.Second, "GET /cluster lists both hosts with their revision", func() bool {
			st, got, err := b.get("/cluster")
			if err != nil || st != http.StatusOK {
				return false
			}
			body = got
			var resp struct {
				HostID   string `json:"host_id"`
				Store    string `json:"store"`
				Revision uint64 `json:"revision"`
				Data     []struct {
					ID      string  `json:"id"`
					Age     float64 `json:"heartbeat_age_seconds"`
					Applied uint64  `json:"applied_revision"`
					Version string  `json:"version"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				t.Fatal(err)
			}
			return resp.HostID == "b" && resp.Store == "etcd" && len(resp.Data) == 2 && resp.Data[0].ID == "a" &&
				resp.Data[0].Age < 3 && resp.Data[1].Age < 3 && resp.Data[0].Applied > 0 && resp.Data[1].Applied > 0 &&
				resp.Data[0].Version != "" && resp.Data[0].Applied >= resp.Revision && resp.Data[1].Applied >= resp.Revision
		})
		t.Logf("GET /cluster: %s", body)
		req, _ := http.NewRequest(http.MethodGet, b.url+"/cluster", nil)
		if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /cluster without a token: %v %v", r, err)
		}
		out, err := exec.Command(buildBinary(t), "cluster", "status", "--url", a.url, "--token", token).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "store etcd") || strings.Count(string(out), "etcd") < 1 ||
			!strings.Contains(string(out), "a ") || !strings.Contains(string(out), "b ") {
			t.Fatalf("cluster status: %v\n%s", err, out)
		}
		t.Logf("cluster status:\n%s", out)
	})

	t.Run("SIGKILLOfAHostLeavesTheOtherServing", func(t *testing.T) {
		nb, err := tcpNB(t, b, "survivor", 83, labGateway+":9001")
		if err != nil {
			t.Fatal(err)
		}
		// b is killed while it takes writes: every write it acknowledged is there.
		var acked []int
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				got, err := tcpNB(t, b, "inflight"+strconv.Itoa(i), 83, labGateway+":9001")
				if err != nil {
					return
				}
				acked = append(acked, got.ID)
			}
		}()
		time.Sleep(300 * time.Millisecond)
		b.kill()
		<-done
		if len(acked) == 0 {
			t.Fatal("b acknowledged no write before it was killed")
		}
		for _, id := range acked {
			if _, err := a.lc.GetNodeBalancer(context.Background(), id); err != nil {
				t.Fatalf("write %d acknowledged by b before its SIGKILL: %v", id, err)
			}
		}
		t.Logf("%d writes acknowledged by b before its SIGKILL, all present", len(acked))
		l.via("a")
		waitGreets(t, l.clientDial, *nb.IPv4+":83", "b1")
		nb2, err := tcpNB(t, a, "after-kill", 83, labGateway+":9001")
		if err != nil {
			t.Fatalf("API of the surviving host: %v", err)
		}
		waitGreets(t, l.clientDial, *nb2.IPv4+":83", "b1")
		waitFor(t, 15*time.Second, "the killed host leaves GET /cluster", func() bool {
			_, body, err := a.get("/cluster")
			return err == nil && !strings.Contains(body, `"id":"b"`)
		})
	})
}
