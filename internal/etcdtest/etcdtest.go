// Package etcdtest runs a real etcd cluster inside a test process
// (go.etcd.io/etcd/server/v3/embed): one or several members on loopback (or on an
// address the test owns), removed when the test ends.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

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
}

// Start runs an n-member cluster whose members listen on host (a loopback address
// such as 127.0.0.1, or an address of the test's own network), on free ports.
func Start(t testing.TB, n int, host string) *Cluster {
	t.Helper()
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
		peer, client := freeURL(t, host), freeURL(t, host)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.InitialClusterToken = "etcdtest"
		initial = append(initial, name+"="+peer.String())
		c.Members = append(c.Members, &Member{cfg: cfg, Client: client.String()})
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	errs := make(chan error, n)
	for _, m := range c.Members {
		go func() { errs <- m.start() }()
	}
	for range n {
		if err := <-errs; err != nil {
			c.Close()
			t.Fatal(err)
		}
	}
	t.Cleanup(c.Close)
	return c
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

// Stop halts member i abruptly (no leadership hand-over, as a crash would).
func (c *Cluster) Stop(i int) {
	m := c.Members[i]
	if m.e == nil {
		return
	}
	m.e.Server.HardStop()
	m.e.Close()
	m.e = nil
}

// Restart starts a stopped member i again from its data directory.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	m.cfg.ClusterState = embed.ClusterStateFlagExisting
	if err := m.start(); err != nil {
		c.t.Fatal(err)
	}
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.Stop(i)
	}
}

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
