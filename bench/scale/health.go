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
// checking the same 1,000 nodes every 2 s with a 1 s timeout, one after the other.
// Both are sampled the same way (user+system time of the whole process from
// /proc, over the same window after the same warm-up), and each process's idle
// CPU (the same nodes configured, checks off) is measured first and subtracted.
func healthCompare(ctx context.Context, bin, tmp string) error {
	nodes := healthNodes()
	targets, err := startTargets(nodes)
	if err != nil {
		return err
	}
	defer targets.close()
	w := healthWindows{warm: 5 * time.Second, window: 30 * time.Second, idle: 10 * time.Second}
	fmt.Println("\n| check (1,000 loopback nodes, every 2 s) | nodebalancer CPU µs/check | HAProxy CPU µs/check | ours ÷ HAProxy | raw µs/check (idle included) ours, HAProxy | idle CPU ms/s ours, HAProxy | checks/s ours, HAProxy |")
	fmt.Println("|---|---|---|---|---|---|---|")
	checks := []string{"connection", "http"}
	if only := os.Getenv("SCALE_CHECKS"); only != "" {
		checks = strings.Split(only, ",")
	}
	for _, check := range checks {
		ours, err := measureOurs(ctx, bin, filepath.Join(tmp, "health-"+check), check, nodes, w)
		if err != nil {
			return fmt.Errorf("nodebalancer %s checks: %w", check, err)
		}
		fmt.Fprintf(os.Stderr, "nodebalancer %s checks: %.1f µs CPU per check (%.1f with idle), idle %.2f ms/s, %.0f checks/s\n",
			check, ours.net(), ours.raw(), ours.idleMsPerSec(), ours.rate())
		if os.Getenv("SCALE_NO_HAPROXY") != "" {
			continue
		}
		theirs, err := measureHAProxy(ctx, filepath.Join(tmp, "haproxy-"+check+".cfg"), check, nodes, targets, w)
		if err != nil {
			return fmt.Errorf("haproxy %s checks: %w", check, err)
		}
		fmt.Printf("| %s | %.1f | %.1f | %.2f | %.1f, %.1f | %.2f, %.2f | %.0f, %.0f |\n", check, ours.net(), theirs.net(),
			ours.net()/theirs.net(), ours.raw(), theirs.raw(), ours.idleMsPerSec(), theirs.idleMsPerSec(), ours.rate(), theirs.rate())
	}
	return nil
}

// healthWindows are the times of one measurement: warm-up, the measured window,
// and the idle window before it.
type healthWindows struct{ warm, window, idle time.Duration }

// cpuSample is one process's CPU over its idle window and over its checking
// window, and the checks it made in the latter.
type cpuSample struct {
	idleCPU, idleWin time.Duration
	cpu, win         time.Duration
	checks           float64
}

func (s cpuSample) rate() float64         { return s.checks / s.win.Seconds() }
func (s cpuSample) raw() float64          { return float64(s.cpu) / 1e3 / s.checks }
func (s cpuSample) idleMsPerSec() float64 { return float64(s.idleCPU) / 1e6 / s.idleWin.Seconds() }

// net is the CPU per check less the idle CPU of the process over the same time.
func (s cpuSample) net() float64 {
	idle := float64(s.idleCPU) * float64(s.win) / float64(s.idleWin)
	return (float64(s.cpu) - idle) / 1e3 / s.checks
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// idleCPU is pid's CPU time over w.idle, after a short settling time.
func idleCPU(ctx context.Context, pid int, w healthWindows) (time.Duration, error) {
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return 0, err
	}
	c0 := cpuTime(pid)
	if err := sleepCtx(ctx, w.idle); err != nil {
		return 0, err
	}
	return cpuTime(pid) - c0, nil
}

// cpuPerCheck samples pid's CPU time and its checks (counted by checks) over
// w.window, after w.warm.
func cpuPerCheck(ctx context.Context, pid int, checks func() (float64, error), w healthWindows, s *cpuSample) error {
	if err := sleepCtx(ctx, w.warm); err != nil {
		return err
	}
	n0, err := checks()
	if err != nil {
		return err
	}
	c0 := cpuTime(pid)
	t0 := time.Now()
	if err := sleepCtx(ctx, w.window); err != nil {
		return err
	}
	c1 := cpuTime(pid)
	s.win = time.Since(t0)
	n1, err := checks()
	if err != nil {
		return err
	}
	if n1 <= n0 {
		return fmt.Errorf("no checks in %v", w.window)
	}
	s.cpu, s.checks = c1-c0, n1-n0
	return nil
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

// measureOurs starts nodebalancer with one NodeBalancer of the 1,000 nodes, check
// none (its idle CPU is measured then), and switches the config to check.
func measureOurs(ctx context.Context, bin, dir, check string, nodes []string, w healthWindows) (cpuSample, error) {
	var s cpuSample
	srv, err := start(ctx, bin, dir)
	if err != nil {
		return s, err
	}
	defer srv.stop()
	if _, err := waitHealthy(ctx, 30*time.Second); err != nil {
		return s, err
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
		Nodes         []nodeJSON `json:"nodes,omitempty"`
	}
	c := cfg{Port: 80, Protocol: "tcp", Check: "none", CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 3}
	if check == "http" {
		c.Protocol = "http"
	}
	for i, a := range nodes {
		c.Nodes = append(c.Nodes, nodeJSON{Label: fmt.Sprintf("node%d", i), Address: a, Weight: 50})
	}
	var nb struct {
		ID int `json:"id"`
	}
	if _, err := api("POST", "/nodebalancers", map[string]any{"label": "health", "region": "local", "configs": []cfg{c}}, &nb); err != nil {
		return s, err
	}
	var cfgs struct {
		Data []struct {
			ID int `json:"id"`
		} `json:"data"`
	}
	if _, err := api("GET", fmt.Sprintf("/nodebalancers/%d/configs", nb.ID), nil, &cfgs); err != nil {
		return s, err
	}
	if len(cfgs.Data) != 1 {
		return s, fmt.Errorf("%d configs, want 1", len(cfgs.Data))
	}
	pid := srv.cmd.Process.Pid
	s.idleWin = w.idle
	if s.idleCPU, err = idleCPU(ctx, pid, w); err != nil {
		return s, err
	}
	c.Check, c.Nodes = check, nil
	if check == "http" {
		c.CheckPath = "/"
	}
	if _, err := api("PUT", fmt.Sprintf("/nodebalancers/%d/configs/%d", nb.ID, cfgs.Data[0].ID), c, nil); err != nil {
		return s, err
	}
	return s, cpuPerCheck(ctx, pid, checksDone, w, &s)
}

// haproxyConfig writes HAProxy's configuration of the same nodes: with check
// "none", the servers are not checked.
func haproxyConfig(path, check string, nodes []string) error {
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
		if check == "none" {
			fmt.Fprintf(&b, "  server s%d %s\n", i, a)
		} else {
			fmt.Fprintf(&b, "  server s%d %s check inter 2s fall 3 rise 2\n", i, a)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// startHAProxy runs HAProxy on the configuration at path until stop is called.
func startHAProxy(ctx context.Context, path string) (pid int, stop func(), err error) {
	cmd := exec.CommandContext(ctx, "haproxy", "-f", path, "-db")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd.Process.Pid, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}, nil
}

// measureHAProxy runs HAProxy on the same nodes without checks (its idle CPU),
// then with checks every 2 s.
func measureHAProxy(ctx context.Context, path, check string, nodes []string, targets *checkTarget, w healthWindows) (cpuSample, error) {
	s := cpuSample{idleWin: w.idle}
	if err := haproxyConfig(path, "none", nodes); err != nil {
		return s, err
	}
	pid, stop, err := startHAProxy(ctx, path)
	if err != nil {
		return s, err
	}
	s.idleCPU, err = idleCPU(ctx, pid, w)
	stop()
	if err != nil {
		return s, err
	}
	if err := haproxyConfig(path, check, nodes); err != nil {
		return s, err
	}
	if pid, stop, err = startHAProxy(ctx, path); err != nil {
		return s, err
	}
	defer stop()
	// HAProxy's connection checks end with a reset before the target's kernel
	// hands them to the target (TCP_QUICKACK off), so they cannot be counted there:
	// HAProxy runs each server's check every inter (2 s), which is what is counted
	// (strace -c -f of HAProxy: 500 connect calls a second). For http checks the
	// targets' accept count agrees.
	start := time.Now()
	nominal := func() (float64, error) { return float64(len(nodes)) * time.Since(start).Seconds() / 2, nil }
	a0 := targets.conns.Load()
	err = cpuPerCheck(ctx, pid, nominal, w, &s)
	fmt.Fprintf(os.Stderr, "haproxy %s checks: targets accepted %d connections, %.0f a second\n", check,
		targets.conns.Load()-a0, float64(targets.conns.Load()-a0)/time.Since(start).Seconds())
	return s, err
}
