package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linode/linodego"
)

// TestServeDrainAppliesToAClientThatCameAfterIt: a drain that reached the API before
// a new client reached an http frontend applies to that client, even when the
// server wakes to find both waiting. The server runs one P (as --adapt-procs runs a
// process whose CPUs are oversubscribed) and is stopped (SIGSTOP) while the request
// is written and the client connects and sends its request, then resumed. Round
// robin would send that client to the drained node: the warm-up ends on the other.
//
// Go's runtime promises no order between goroutines woken together; the accept loop
// yields so that the request goes first. Here a client still reached the drained
// node in 5 of 120 rounds with the yield, and in 92 of 120 without it (14–18 of this
// test's 20 each run). The test allows a few.
func TestServeDrainAppliesToAClientThatCameAfterIt(t *testing.T) {
	const rounds, allowed = 20, 4
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const token = "order-test-token-0123456789"
	apiURL, proc, _ := startServe(t, t.TempDir(), []string{"--frontend-pool", "127.0.214.0/28"},
		"NODEBALANCER_BOOTSTRAP_TOKEN="+token, "GOMAXPROCS=1")
	t.Cleanup(func() { proc.Signal(syscall.SIGCONT) }) // before the kill, should a check fail while it is stopped
	nodeA, nodeB := nameServer(t, "127.0.214.65:0", "a"), nameServer(t, "127.0.214.66:0", "b")

	c := linodego.NewClient(nil)
	c.SetBaseURL(apiURL).SetAPIVersion("v4").SetToken(token)
	ctx := context.Background()
	label := "order"
	nb, err := c.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: &label,
		Configs: []*linodego.NodeBalancerConfigCreateOptions{{
			Port: 8080, Protocol: linodego.ProtocolHTTP, Algorithm: linodego.AlgorithmRoundRobin,
			Stickiness: linodego.StickinessNone, Check: linodego.CheckNone,
			Nodes: []linodego.NodeBalancerNodeCreateOptions{
				{Label: "node-a", Address: nodeA, Weight: 50}, {Label: "node-b", Address: nodeB, Weight: 50},
			},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := c.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	if err != nil || len(cfgs) != 1 {
		t.Fatalf("configs: %v %v", cfgs, err)
	}
	nodes, err := c.ListNodeBalancerNodes(ctx, nb.ID, cfgs[0].ID, nil)
	if err != nil || len(nodes) != 2 || nodes[0].Label != "node-a" {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}
	front := net.JoinHostPort(*nb.IPv4, "8080")
	nodeURL, err := url.Parse(fmt.Sprintf("%s/v4/nodebalancers/%d/configs/%d/nodes/%d", apiURL, nb.ID, cfgs[0].ID, nodes[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for seen := map[string]bool{}; !seen["a"] || !seen["b"]; {
		if time.Now().After(deadline) {
			t.Fatalf("both nodes did not answer through %s within 10 s: %v", front, seen)
		}
		if who, err := askNode(front); err == nil {
			seen[who] = true
		}
	}

	late := 0 // clients that reached the drained node
	for round := range rounds {
		// The next client would go to a.
		for i := 0; ; i++ {
			who, err := askNode(front)
			if err != nil {
				t.Fatal(err)
			}
			if who == "b" {
				break
			}
			if i == 10 {
				t.Fatal("b did not answer in 10 requests")
			}
		}
		api, err := net.Dial("tcp", nodeURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		apiR := bufio.NewReader(api)
		if mode := apiCall(t, api, apiR, nodeURL, token, http.MethodGet, ""); mode != "accept" {
			t.Fatalf("node a: mode %q before the drain", mode)
		}

		if err := proc.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, proc.Pid)
		put := fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"mode\":\"drain\"}",
			nodeURL.RequestURI(), nodeURL.Host, token)
		if _, err := io.WriteString(api, put); err != nil {
			t.Fatal(err)
		}
		client, err := net.Dial("tcp", front) // the kernel completes the handshake
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(client, "GET / HTTP/1.1\r\nHost: order\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if err := proc.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}

		who, err := readNode(client)
		if err != nil {
			t.Fatal(err)
		}
		if mode := apiAnswer(t, apiR, http.MethodPut); mode != "drain" {
			t.Fatalf("round %d: the drain answered mode %q", round, mode)
		}
		api.Close()
		if who != "b" {
			late++
			t.Logf("round %d: a client that connected after the drain was sent reached %s", round, who)
		}
		if _, err := c.UpdateNodeBalancerNode(ctx, nb.ID, cfgs[0].ID, nodes[0].ID, linodego.NodeBalancerNodeUpdateOptions{Mode: linodego.ModeAccept}); err != nil {
			t.Fatal(err)
		}
	}
	if late > allowed {
		t.Fatalf("in %d of %d rounds a client that connected after the drain was sent reached the drained node; want at most %d", late, rounds, allowed)
	}
}

// nameServer serves, on addr, http answers whose body is name, and returns its
// address.
func nameServer(t *testing.T, addr, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// askNode sends one request through front on a new connection and returns the
// answering node's name.
func askNode(front string) (string, error) {
	c, err := net.DialTimeout("tcp", front, 2*time.Second)
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: order\r\nConnection: close\r\n\r\n"); err != nil {
		c.Close()
		return "", err
	}
	return readNode(c)
}

// readNode reads the answer to a request sent on c, closes c and returns the body.
func readNode(c net.Conn) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

// apiCall sends method with body to the node URL u on the kept-alive connection c
// and returns the node's mode from the answer.
func apiCall(t *testing.T, c net.Conn, r *bufio.Reader, u *url.URL, token, method, body string) string {
	t.Helper()
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		method, u.RequestURI(), u.Host, token, len(body), body)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return apiAnswer(t, r, method)
}

// apiAnswer reads an API answer about a node from r and returns the node's mode.
func apiAnswer(t *testing.T, r *bufio.Reader, method string) string {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var node struct {
		Mode string `json:"mode"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &node) != nil {
		t.Fatalf("%s node: status %d: %s", method, resp.StatusCode, b)
	}
	return node.Mode
}

// waitStopped waits until every thread of process pid is stopped.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		stopped := len(tasks) > 0
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			// The state follows the command's closing parenthesis: T when stopped.
			if i := strings.LastIndexByte(string(b), ')'); err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("process %d did not stop within 5 s", pid)
}
