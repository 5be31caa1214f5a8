package multihost

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/testbin"

	"github.com/linode/linodego"
)

const token = "multihost-test-token-0123456789abcdef"

// buildBinary builds nodebalancer once per test run.
func buildBinary(t *testing.T) string { return testbin.Nodebalancer(t) }

// host is one running `nodebalancer serve`.
type host struct {
	id  string
	cmd *exec.Cmd
	url string
	lc  *linodego.Client

	mu     sync.Mutex
	stderr strings.Builder
	exited chan struct{}
}

// startHost runs serve (inside network namespace netns when not empty) with args
// and waits until it logs that it is ready; the error carries its stderr when it
// exits first.
func startHost(t *testing.T, netns, id string, args ...string) (*host, error) {
	t.Helper()
	argv := append([]string{"serve", "--host-id", id, "--data", t.TempDir()}, args...)
	name := buildBinary(t)
	if netns != "" {
		argv = append([]string{"netns", "exec", netns, name}, argv...)
		name = "ip"
	}
	h := &host{id: id, cmd: exec.Command(name, argv...), exited: make(chan struct{})}
	h.cmd.Env = append(os.Environ(), "NODEBALANCER_BOOTSTRAP_TOKEN="+token)
	// No Pdeathsig: it fires when the forking OS thread ends, and the namespace
	// dialer retires threads. t.Cleanup kills the host.
	pipe, err := h.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { h.kill() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			h.mu.Lock()
			h.stderr.Write(sc.Bytes())
			h.stderr.WriteByte('\n')
			h.mu.Unlock()
			var line struct{ Msg, API string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "nodebalancer ready" {
				ready <- line.API
			}
		}
		io.Copy(io.Discard, pipe)
		h.cmd.Wait()
		close(h.exited)
	}()
	select {
	case h.url = <-ready:
	case <-h.exited:
		return nil, fmt.Errorf("host %s exited before it was ready:\n%s", id, h.log())
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("host %s not ready in 60 s:\n%s", id, h.log())
	}
	c := linodego.NewClient(&http.Client{Timeout: 30 * time.Second})
	c.SetBaseURL(h.url).SetAPIVersion("v4").SetToken(token)
	c.SetRetryCount(0)
	h.lc = &c
	return h, nil
}

func mustStartHost(t *testing.T, netns, id string, args ...string) *host {
	t.Helper()
	h, err := startHost(t, netns, id, args...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *host) log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stderr.String()
}

// kill sends SIGKILL (to ip netns exec's child as well: it execs, so it is the same
// process) and waits for the exit.
func (h *host) kill() {
	if h.cmd.Process != nil {
		h.cmd.Process.Kill()
		<-h.exited
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (h *host) stop(t *testing.T) {
	t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("host %s did not stop in 30 s:\n%s", h.id, h.log())
	}
}

// get fetches path of the host's root with the token and returns status and body.
func (h *host) get(path string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, h.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// backend serves, on addr, a line naming it to every connection.
func backend(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(name + "\n"))
				io.Copy(io.Discard, c)
			}()
		}
	}()
}

// greet dials addr with dial and returns the first line it sends.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func greet(dial dialFunc, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

var loopDial = (&net.Dialer{}).DialContext

// tcpNB creates, through h, a NodeBalancer with one tcp config on port with one node.
func tcpNB(t *testing.T, h *host, label string, port int, node string) (*linodego.NodeBalancer, error) {
	t.Helper()
	check := linodego.CheckNone
	return h.lc.CreateNodeBalancer(context.Background(), linodego.NodeBalancerCreateOptions{
		Label: &label, Region: "local",
		Configs: []*linodego.NodeBalancerConfigCreateOptions{{
			Port: port, Protocol: linodego.ProtocolTCP, Check: check,
			Nodes: []linodego.NodeBalancerNodeCreateOptions{{Label: "node1", Address: node, Weight: 100, Mode: linodego.ModeAccept}},
		}},
	})
}

// TestMain removes the binary buildBinary made.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Remove()
	os.Exit(code)
}
