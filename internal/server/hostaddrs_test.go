package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// TestNodeRefusedAtAnAddressTheHostGainsLater: with the API on a wildcard address,
// a node at an address the host gains after the start is refused as soon as the
// kernel reports it (no restart, no periodic re-read: that is set to an hour), and
// allowed again once the address is gone. In a network namespace of its own, where
// the test adds and removes 198.18.7.7 on lo.
func TestNodeRefusedAtAnAddressTheHostGainsLater(t *testing.T) {
	if !testnet.InNetNS(t) {
		return
	}
	const token = "hostaddrs-test-token-0123456789abcdef"
	s, err := New(Config{Listen: "0.0.0.0:8080", DataDir: t.TempDir(), Region: "local", BootstrapToken: token,
		FrontendPool:   []netip.Prefix{netip.MustParsePrefix("127.0.85.0/24")},
		BackendRanges:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("198.18.0.0/15")},
		HostAddrsEvery: time.Hour,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://127.0.0.1:8080/v4"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var nb, cfg struct{ ID int }
	for _, x := range []struct {
		path string
		into *struct{ ID int }
		body string
	}{{"/nodebalancers", &nb, `{"region":"local"}`}, {"", &cfg, `{"port":80,"protocol":"tcp","check":"none"}`}} {
		path := x.path
		if path == "" {
			path = fmt.Sprintf("/nodebalancers/%d/configs", nb.ID)
		}
		code, body := call("POST", path, x.body)
		if code != 200 || json.Unmarshal([]byte(body), x.into) != nil {
			t.Fatalf("POST %s: %d %s", path, code, body)
		}
	}
	addNode := func(label string) (int, string) {
		return call("POST", fmt.Sprintf("/nodebalancers/%d/configs/%d/nodes", nb.ID, cfg.ID),
			`{"label":"`+label+`","address":"198.18.7.7:8080"}`)
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	if code, body := addNode("before"); code != 200 {
		t.Fatalf("198.18.7.7 is not this host's yet: %d %s", code, body)
	}
	ip("addr", "add", "198.18.7.7/32", "dev", "lo")
	start := time.Now()
	for {
		code, body := addNode("after")
		if code == 400 && strings.Contains(body, `"field":"address"`) && strings.Contains(body, "reaches this server's own listener") {
			break
		}
		if code != 200 && code != 400 {
			t.Fatalf("POST node: %d %s", code, body)
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("3 s after the host gained 198.18.7.7 a node there is still accepted (%d %s)", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("a node at the new address refused %v after it was added", time.Since(start).Round(time.Millisecond))
	ip("addr", "del", "198.18.7.7/32", "dev", "lo")
	for start = time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := addNode("gone"); code == 200 {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("3 s after the host lost 198.18.7.7 a node there is still refused")
		}
	}
}

// TestHostAddrsReReadPeriodically: without change notices (another OS, or netlink
// failing), the periodic re-read alone brings a new address to the store.
func TestHostAddrsReReadPeriodically(t *testing.T) {
	db := teststore.New(t, "127.0.85.0/24", func(o *store.Options) {
		o.Own = model.Listening{Addrs: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:9100")}}
	})
	s := &Server{cfg: Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, db: db}
	var current atomic.Pointer[[]netip.Addr]
	current.Store(&[]netip.Addr{})
	read := func() ([]netip.Addr, error) { return *current.Load(), nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.followHostAddrs(ctx, nil, 20*time.Millisecond, read, nil) }()
	defer func() { cancel(); <-done }()

	nb, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, []model.ConfigWithNodes{{Config: model.NewConfig()}})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, _ := db.Configs(nb.ID)
	create := func() error {
		_, err := db.CreateNode(nb.ID, cfgs[0].ID, model.Node{Label: "n", Address: "10.8.8.8:9100", Weight: 1, Mode: model.ModeAccept})
		return err
	}
	if err := create(); err != nil {
		t.Fatal(err)
	}
	current.Store(&[]netip.Addr{netip.MustParseAddr("10.8.8.8")})
	for end := time.Now().Add(2 * time.Second); create() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the periodic re-read did not bring the new address to the store")
		}
	}
}
