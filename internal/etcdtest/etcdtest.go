// Package etcdtest runs a real etcd cluster for tests
// (go.etcd.io/etcd/server/v3/embed): one or several members on loopback (or on an
// address the test owns), inside the test process or, to be killed with SIGKILL,
// each in its own process; removed when the test ends.
package etcdtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	t       testing.TB
}

// Member is one etcd member.
type Member struct {
	cfg    *embed.Config
	e      *embed.Etcd
	Client string // its client URL

	// With StartProcesses: the member's process and how it was started.
	bin  string
	cmd  *exec.Cmd
	done chan struct{}

	held []int // sockets bound to its ports while it is stopped (Stop, Restart)
}

// TLS asks StartTLS's member to serve clients over https with this certificate and
// key (files), and to require client certificates signed by ClientCA (a file).
type TLS struct {
	CertFile, KeyFile, ClientCA string
}

// StartTLS runs a one-member cluster whose client URL is https://localhost:port.
func StartTLS(t testing.TB, tl TLS) *Cluster {
	t.Helper()
	return start(t, 1, "127.0.0.1", &tl)
}

// Start runs an n-member cluster whose members listen on host (a loopback address
// such as 127.0.0.1, or an address of the test's own network), on free ports.
func Start(t testing.TB, n int, host string) *Cluster {
	t.Helper()
	return start(t, n, host, nil)
}

func start(t testing.TB, n int, host string, tl *TLS) *Cluster {
	t.Helper()
	return startRetrying(t, func() (*Cluster, error) { return tryStart(t, n, host, tl) })
}

// startRetrying returns the cluster try starts, calling it again (fresh ports) while
// it fails because a port was taken, up to bindAttempts times.
func startRetrying(t testing.TB, try func() (*Cluster, error)) *Cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := try()
		if err == nil {
			t.Cleanup(c.Close)
			return c
		}
		if attempt == bindAttempts || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
		t.Logf("etcdtest: %v; again on other ports", err)
	}
}

// bindAttempts is how many times a cluster is started on fresh ports when a port
// found free was taken before the member bound it (another test's connection may
// get it as its ephemeral port in between: freeURL can only say it was free).
const bindAttempts = 5

// tryStart starts an n-member cluster on ports free at the time of the call; on an
// error, the members it started are stopped.
func tryStart(t testing.TB, n int, host string, tl *TLS) (*Cluster, error) {
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = t.TempDir()
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// A NodeBalancer with many nodes is one transaction; see README.
		cfg.MaxTxnOps = 10000
		cfg.MaxRequestBytes = 16 << 20
		cfg.UnsafeNoFsync = os.Getenv("ETCDTEST_FSYNC") == ""
		cfg.TickMs, cfg.ElectionMs = 50, 500
		peer, client := pickURL(t, host), pickURL(t, host)
		if tl != nil {
			client.Scheme, client.Host = "https", "localhost:"+client.Port()
			cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = tl.CertFile, tl.KeyFile
			cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.ClientCertAuth = tl.ClientCA, true
		}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.InitialClusterToken = "etcdtest"
		initial = append(initial, name+"="+peer.String())
		c.Members = append(c.Members, &Member{cfg: cfg, Client: client.String()})
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	return c.startAll((*Member).start)
}

// startAll starts every member with start, at once (a member waits for the others to
// be ready), and returns c, or the first error once every start returned, with the
// members stopped.
func (c *Cluster) startAll(start func(*Member) error) (*Cluster, error) {
	errs := make(chan error, len(c.Members))
	for _, m := range c.Members {
		go func() { errs <- start(m) }()
	}
	var err error
	for range c.Members {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (m *Member) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("etcd member %s not ready in 30 s", m.cfg.Name)
	}
	m.e = e
	return nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Client)
	}
	return out
}

// StartProcesses runs an n-member cluster as Start does, each member in its own
// process (the member command, built once per test binary), so that Kill can
// SIGKILL one.
func StartProcesses(t testing.TB, n int, host string) *Cluster {
	t.Helper()
	bin := buildMember(t)
	return startRetrying(t, func() (*Cluster, error) { return tryStartProcesses(t, n, host, bin) })
}

// tryStartProcesses is tryStart with each member in a process of its own.
func tryStartProcesses(t testing.TB, n int, host, bin string) (*Cluster, error) {
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = fmt.Sprintf("m%d", i), t.TempDir()
		peer, client := pickURL(t, host), pickURL(t, host)
		cfg.ListenPeerUrls, cfg.ListenClientUrls = []url.URL{peer}, []url.URL{client}
		initial = append(initial, cfg.Name+"="+peer.String())
		c.Members = append(c.Members, &Member{cfg: cfg, Client: client.String(), bin: bin})
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	return c.startAll((*Member).startProcess)
}

func (m *Member) startProcess() error {
	state := m.cfg.ClusterState
	if state == "" {
		state = embed.ClusterStateFlagNew
	}
	m.cmd = exec.Command(m.bin, "-name", m.cfg.Name, "-dir", m.cfg.Dir, "-client", m.Client,
		"-peer", m.cfg.ListenPeerUrls[0].String(), "-initial-cluster", m.cfg.InitialCluster, "-state", state)
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := m.cmd.Start(); err != nil {
		return err
	}
	m.done = make(chan struct{})
	first := make(chan string, 1) // "ready", or why it exited
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		first <- sc.Text()
		for sc.Scan() {
		}
		m.cmd.Wait()
		close(m.done)
	}()
	select {
	case line := <-first:
		switch {
		case line == "ready":
			return nil
		case strings.HasPrefix(line, "addrinuse"):
			return fmt.Errorf("etcd member %s: %s: %w", m.cfg.Name, line, syscall.EADDRINUSE)
		}
		return fmt.Errorf("etcd member %s exited before it was ready", m.cfg.Name)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("etcd member %s not ready in 30 s", m.cfg.Name)
	}
}

// Leader returns the index of the member that leads the cluster now.
func (c *Cluster) Leader() int {
	c.t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	for i, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.Status(ctx, m.Client)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	c.t.Fatal("no etcd member leads")
	return -1
}

// Kill sends SIGKILL to member i (StartProcesses) and waits for it to die.
func (c *Cluster) Kill(i int) {
	m := c.Members[i]
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

var (
	buildOnce sync.Once
	memberBin string
	buildErr  error
)

// buildMember builds the member command once per test binary.
func buildMember(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		dir, err := os.MkdirTemp("", "etcdtest-member-")
		if err != nil {
			buildErr = err
			return
		}
		memberBin = filepath.Join(dir, "member")
		out, err := exec.Command("go", "build", "-o", memberBin, filepath.Join(filepath.Dir(file), "member")).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build the etcd member: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return memberBin
}

// Stop halts member i abruptly (no leadership hand-over, as a crash would); a
// member process is killed. Until Restart, this process holds the member's ports:
// Restart must use the same ones (the other members and the clients know them), and
// another process's connection could otherwise take one as its ephemeral port
// meanwhile (it did once, with 16 test binaries at once).
func (c *Cluster) Stop(i int) {
	m := c.Members[i]
	if m.bin != "" {
		if m.cmd == nil {
			return
		}
		c.Kill(i)
	} else {
		if m.e == nil {
			return
		}
		m.e.Server.HardStop()
		m.e.Close()
		m.e = nil
	}
	for _, u := range append(append([]url.URL{}, m.cfg.ListenPeerUrls...), m.cfg.ListenClientUrls...) {
		if fd, err := bindOnly(u.Host); err == nil { // best effort: a port taken already stays so
			m.held = append(m.held, fd)
		}
	}
}

// bindOnly binds a TCP socket to hostport without listening on it: the kernel then
// gives the port to no connection as its ephemeral port, and a connection to it is
// still refused, as to a crashed member's.
func bindOnly(hostport string) (int, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return -1, err
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return -1, err
	}
	family, sa := syscall.AF_INET, syscall.Sockaddr(&syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family, sa = syscall.AF_INET6, &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	syscall.ForkLock.RLock() // not inherited by a member process started meanwhile
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, err
	}
	err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err == nil {
		err = syscall.Bind(fd, sa)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// releasePorts lets go of the ports Stop held.
func (m *Member) releasePorts() {
	for _, fd := range m.held {
		syscall.Close(fd)
	}
	m.held = nil
}

// Restart starts a stopped member i again from its data directory, on its ports.
// Should one have been taken anyway, it tries again for a few seconds, as a
// connection that took it may end.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	m.cfg.ClusterState = embed.ClusterStateFlagExisting
	start := m.start
	if m.bin != "" {
		start = m.startProcess
	}
	m.releasePorts()
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil {
			return
		}
		if attempt == 20 || !errors.Is(err, syscall.EADDRINUSE) {
			c.t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Close stops every member and lets go of their ports.
func (c *Cluster) Close() {
	for i, m := range c.Members {
		c.Stop(i)
		m.releasePorts()
	}
}

// pickURL is freeURL; a test replaces it to hand out a taken port.
var pickURL = freeURL

// freeURL returns http://host:port with a port free at the time of the call.
func freeURL(t testing.TB, host string) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return url.URL{Scheme: "http", Host: addr}
}
