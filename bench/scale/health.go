package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// healthNodes are the 1,000 real loopback nodes both balancers check.
func healthNodes() []string {
	var out []string
	for port := 9001; port <= 9004; port++ {
		for host := 1; host <= 250; host++ {
			out = append(out, fmt.Sprintf("127.0.234.%d:%d", host, port))
		}
	}
	return out
}

// checkTarget counts the connections (checks) its listeners accept; it answers an
// HTTP request with 200 and closes a connection that sends nothing.
type checkTarget struct {
	lns   []net.Listener
	conns atomic.Int64
}

func startTargets(addrs []string) (*checkTarget, error) {
	t := &checkTarget{}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.close()
			return nil, err
		}
		t.lns = append(t.lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.conns.Add(1)
				go answer(c)
			}
		}()
	}
	return t, nil
}

func answer(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "GET ") {
		return // a connection check
	}
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if l == "\r\n" || l == "\n" {
			break
		}
	}
	c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
}

func (t *checkTarget) close() {
	for _, ln := range t.lns {
		ln.Close()
	}
}

// healthCompare measures the CPU time per check of nodebalancer and HAProxy, each
// checking the same 1,000 nodes every 2 s, one after the other.
func healthCompare(ctx context.Context, bin, tmp string) error {
	nodes := healthNodes()
	targets, err := startTargets(nodes)
	if err != nil {
		return err
	}
	defer targets.close()
	const warm, window = 5 * time.Second, 30 * time.Second
	fmt.Println("\n| check (1,000 loopback nodes, every 2 s) | nodebalancer CPU µs/check | HAProxy CPU µs/check | ours/HAProxy | checks/s ours, HAProxy |")
	fmt.Println("|---|---|---|---|---|")
	checks := []string{"connection", "http"}
	if only := os.Getenv("SCALE_CHECKS"); only != "" {
		checks = strings.Split(only, ",")
	}
	for _, check := range checks {
		ours, oursRate, err := measureOurs(ctx, bin, filepath.Join(tmp, "health-"+check), check, nodes, targets, warm, window)
		if err != nil {
			return fmt.Errorf("nodebalancer %s checks: %w", check, err)
		}
		fmt.Fprintf(os.Stderr, "nodebalancer %s checks: %.1f µs CPU per check, %.0f checks/s\n", check, ours, oursRate)
		if os.Getenv("SCALE_NO_HAPROXY") != "" {
			continue
		}
		theirs, theirRate, err := measureHAProxy(ctx, filepath.Join(tmp, "haproxy-"+check+".cfg"), check, nodes, targets, warm, window)
		if err != nil {
			return fmt.Errorf("haproxy %s checks: %w", check, err)
		}
		fmt.Printf("| %s | %.1f | %.1f | %.2f× | %.0f, %.0f |\n", check, ours, theirs, theirs/ours, oursRate, theirRate)
	}
	return nil
}

// cpuPerCheck samples pid's CPU time and its checks (counted by checks) over
// window, after warm.
func cpuPerCheck(ctx context.Context, pid int, checks func() (float64, error), warm, window time.Duration) (usPerCheck, perSec float64, err error) {
	select {
	case <-time.After(warm):
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	n0, err := checks()
	if err != nil {
		return 0, 0, err
	}
	c0 := cpuTime(pid)
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	c1 := cpuTime(pid)
	n1, err := checks()
	if err != nil {
		return 0, 0, err
	}
	if n1 <= n0 {
		return 0, 0, fmt.Errorf("no checks in %v", window)
	}
	return float64(c1-c0) / 1e3 / (n1 - n0), (n1 - n0) / window.Seconds(), nil
}

// checksDone sums nodebalancer_health_checks_total over every node and result.
func checksDone() (float64, error) {
	resp, err := client.Get("http://" + apiAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "nodebalancer_health_checks_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}

func measureOurs(ctx context.Context, bin, dir, check string, nodes []string, targets *checkTarget, warm, window time.Duration) (float64, float64, error) {
	srv, err := start(ctx, bin, dir)
	if err != nil {
		return 0, 0, err
	}
	defer srv.stop()
	if _, err := waitHealthy(ctx, 30*time.Second); err != nil {
		return 0, 0, err
	}
	type cfg struct {
		Port          int        `json:"port"`
		Protocol      string     `json:"protocol"`
		Check         string     `json:"check"`
		CheckPath     string     `json:"check_path,omitempty"`
		CheckInterval int        `json:"check_interval"`
		CheckTimeout  int        `json:"check_timeout"`
		CheckAttempts int        `json:"check_attempts"`
		CheckPassive  bool       `json:"check_passive"`
		Nodes         []nodeJSON `json:"nodes"`
	}
	c := cfg{Port: 80, Protocol: "tcp", Check: check, CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 3}
	if check == "http" {
		c.Protocol, c.CheckPath = "http", "/"
	}
	for i, a := range nodes {
		c.Nodes = append(c.Nodes, nodeJSON{Label: fmt.Sprintf("node%d", i), Address: a, Weight: 50})
	}
	if _, err := api("POST", "/nodebalancers", map[string]any{"label": "health", "region": "local", "configs": []cfg{c}}, nil); err != nil {
		return 0, 0, err
	}
	return cpuPerCheck(ctx, srv.cmd.Process.Pid, checksDone, warm, window)
}

func measureHAProxy(ctx context.Context, path, check string, nodes []string, targets *checkTarget, warm, window time.Duration) (float64, float64, error) {
	var b strings.Builder
	mode := "tcp"
	if check == "http" {
		mode = "http"
	}
	fmt.Fprintf(&b, "global\n  maxconn 4096\n\ndefaults\n  mode %s\n  timeout connect 1s\n  timeout check 1s\n  timeout client 5s\n  timeout server 5s\n\n", mode)
	// HAProxy refuses to start without a listener: one on loopback that nothing uses.
	b.WriteString("frontend fe\n  bind 127.0.235.1:18590\n  default_backend be\n\n")
	b.WriteString("backend be\n")
	if check == "http" {
		b.WriteString("  option httpchk GET /\n")
	}
	for i, a := range nodes {
		fmt.Fprintf(&b, "  server s%d %s check inter 2s fall 3 rise 2\n", i, a)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, "haproxy", "-f", path, "-db")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	// HAProxy closes an L4 check with a reset before the target accepts it, so it
	// cannot be counted there: HAProxy runs each server's check every inter (2 s),
	// which is what is counted. (For http checks the targets' accept count agrees.)
	start := time.Now()
	nominal := func() (float64, error) { return float64(len(nodes)) * time.Since(start).Seconds() / 2, nil }
	us, rate, err := cpuPerCheck(ctx, cmd.Process.Pid, nominal, warm, window)
	fmt.Fprintf(os.Stderr, "haproxy %s checks: targets accepted %d connections in all\n", check, targets.conns.Load())
	return us, rate, err
}
