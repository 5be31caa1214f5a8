package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/dataplane"
)

// fetch GETs url (with the bootstrap token when auth) and returns status and body.
func fetch(t *testing.T, url string, auth bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth {
		req.Header.Set("Authorization", "Bearer "+bootstrapToken)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// TestBusyPortIsVisibleEverywhereAndRetried: a config whose port another process holds
// makes /healthz 503 naming it, nodebalancer_listener_up 0 and the config's listener
// field "failed"; once the port is free the server binds it on its own and all three
// say so.
func TestBusyPortIsVisibleEverywhereAndRetried(t *testing.T) {
	e := newEnv(t)
	front := fmt.Sprintf("127.61.%d.1:8090", e.n) // the first NodeBalancer's address
	squatter, err := net.Listen("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("squatted")})
	if err != nil {
		t.Fatal(err)
	}
	if *nb.IPv4+":8090" != front {
		t.Fatalf("NodeBalancer got %s, the test squats on %s", *nb.IPv4, front)
	}
	cfg, err := e.lc.CreateNodeBalancerConfig(e.ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{Port: 8090, Protocol: linodego.ProtocolTCP})
	if err != nil {
		t.Fatal(err)
	}
	cfgURL := fmt.Sprintf("%s/v4/nodebalancers/%d/configs/%d", e.api, nb.ID, cfg.ID)
	metric := `nodebalancer_listener_up{config_port="8090",nodebalancer="squatted"} `
	listener := func() map[string]any {
		_, body := fetch(t, cfgURL, true)
		var c struct {
			Listener map[string]any `json:"listener"`
		}
		if err := json.Unmarshal([]byte(body), &c); err != nil {
			t.Fatalf("config %q: %v", body, err)
		}
		return c.Listener
	}

	var health string
	waitFor(t, 5*time.Second, "/healthz to report the busy port", func() bool {
		var code int
		code, health = fetch(t, e.api+"/healthz", false)
		return code == http.StatusServiceUnavailable && strings.HasPrefix(health, "degraded")
	})
	want := fmt.Sprintf("config %d of nodebalancer %d on %s: ", cfg.ID, nb.ID, front)
	if !strings.Contains(health, want) || !strings.Contains(health, "address already in use") {
		t.Errorf("/healthz body %q, want a line starting %q with the error", health, want)
	}
	if _, m := fetch(t, e.api+"/metrics", false); !strings.Contains(m, metric+"0\n") {
		t.Errorf("/metrics lacks %s0", metric)
	}
	if l := listener(); l["state"] != "failed" || l["address"] != front || !strings.Contains(fmt.Sprint(l["error"]), "address already in use") || l["since"] == nil {
		t.Errorf("listener while the port is busy: %v", l)
	}
	// linodego, which knows nothing of the field, reads the config as before.
	if got, err := e.lc.GetNodeBalancerConfig(e.ctx, nb.ID, cfg.ID); err != nil || got.Port != 8090 {
		t.Errorf("linodego GetNodeBalancerConfig: %+v, %v", got, err)
	}

	squatter.Close()
	took := waitFor(t, dataplane.RetryMax+3*time.Second, "/healthz ok once the port is free", func() bool {
		code, _ := fetch(t, e.api+"/healthz", false)
		return code == http.StatusOK
	})
	t.Logf("bound %v after the port was freed", took.Round(time.Millisecond))
	if _, m := fetch(t, e.api+"/metrics", false); !strings.Contains(m, metric+"1\n") {
		t.Errorf("/metrics lacks %s1 after the bind", metric)
	}
	if l := listener(); l["state"] != "open" || l["error"] != nil {
		t.Errorf("listener after the bind: %v", l)
	}
	c, err := net.DialTimeout("tcp", front, time.Second)
	if err != nil {
		t.Fatalf("dial %s after the bind: %v", front, err)
	}
	c.Close()
}

// TestNodesCannotPointAtTheServer: through the real server and linodego, a node at the
// API's own address or at a frontend of this server is refused with a 400 naming
// address, so a read_write token cannot publish the management API through a
// NodeBalancer nor loop a frontend into itself.
func TestNodesCannotPointAtTheServer(t *testing.T) {
	e := newEnv(t)
	l := e.balancer(linodego.NodeBalancerConfigCreateOptions{Port: 8091, Protocol: linodego.ProtocolHTTP})
	apiAddr := strings.TrimPrefix(e.api, "http://")
	for _, addr := range []string{apiAddr, l.front.String()} {
		_, err := e.lc.CreateNodeBalancerNode(e.ctx, l.nbID, l.cfgID, linodego.NodeBalancerNodeCreateOptions{Address: addr, Label: "self"})
		var le *linodego.Error
		if !errors.As(err, &le) || le.Code != http.StatusBadRequest || !strings.Contains(le.Error(), "[address]") ||
			!strings.Contains(le.Error(), "must not point at the server itself") {
			t.Errorf("node at %s: %v, want a 400 naming address", addr, err)
		}
	}
	nodes, err := e.lc.ListNodeBalancerNodes(e.ctx, l.nbID, l.cfgID, nil)
	if err != nil || len(nodes) != 0 {
		t.Errorf("nodes after the refusals: %v, %v", nodes, err)
	}
	// Another loopback address on the API's port is another host's business.
	_, port, _ := net.SplitHostPort(apiAddr)
	if _, err := e.lc.CreateNodeBalancerNode(e.ctx, l.nbID, l.cfgID,
		linodego.NodeBalancerNodeCreateOptions{Address: e.backendIP(9).String() + ":" + port, Label: "other"}); err != nil {
		t.Errorf("a node on another loopback address: %v", err)
	}
}
