package multihost

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linode/linodego"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nodebalancer/nodebalancer/internal/etcdtest"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs etcd")
	}
}

// etcdArgs are a host's store flags for cluster c.
func etcdArgs(c *etcdtest.Cluster, extra ...string) []string {
	return append([]string{"--store", "etcd", "--etcd-endpoints", strings.Join(c.Endpoints(), ","),
		"--etcd-timeout", "1s"}, extra...)
}

// When etcd goes away the data plane keeps serving, API reads and writes answer 503
// with the reason within the timeout, /healthz says degraded; when it is back the
// host catches up without a restart.
func TestEtcdOutageAndCatchUp(t *testing.T) {
	skipShort(t)
	c := etcdtest.Start(t, 1, "127.0.0.1")
	backend(t, "127.0.152.1:9000", "b1")
	h := mustStartHost(t, "", "solo", etcdArgs(c, "--listen", "127.0.0.1:0", "--frontend-pool", "127.0.150.0/24")...)
	ctx := context.Background()
	nb, err := tcpNB(t, h, "before", 8000, "127.0.152.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	front := *nb.IPv4 + ":8000"
	waitGreets(t, loopDial, front, "b1")

	c.Stop(0)
	start := time.Now()
	_, err = tcpNB(t, h, "during", 8000, "127.0.152.1:9000")
	took := time.Since(start)
	var le *linodego.Error
	if !errors.As(err, &le) || le.Code != http.StatusServiceUnavailable || !strings.Contains(le.Message, "etcd") {
		t.Fatalf("write during the outage: %v", err)
	}
	if took > 3*time.Second {
		t.Fatalf("write during the outage took %v", took)
	}
	t.Logf("write during the outage: %v after %v", err, took)
	if _, err := h.lc.GetNodeBalancer(ctx, nb.ID); !errors.As(err, &le) || le.Code != http.StatusServiceUnavailable {
		t.Fatalf("read during the outage: %v", err)
	}
	waitFor(t, 10*time.Second, "healthz degraded", func() bool {
		st, body, err := h.get("/healthz")
		return err == nil && st == http.StatusServiceUnavailable && strings.Contains(body, "degraded") && strings.Contains(body, "etcd")
	})
	if got, err := greet(loopDial, front); err != nil || got != "b1" {
		t.Fatalf("data plane during the outage: %q %v", got, err)
	}

	c.Restart(0)
	waitFor(t, 20*time.Second, "healthz ok after etcd came back", func() bool {
		st, _, err := h.get("/healthz")
		return err == nil && st == http.StatusOK
	})
	nb2, err := tcpNB(t, h, "after", 8000, "127.0.152.1:9000")
	if err != nil {
		t.Fatalf("write after the outage: %v\n%s", err, h.log())
	}
	waitGreets(t, loopDial, *nb2.IPv4+":8000", "b1")
}

// A second host with an id a live host holds is refused at start, with a message
// naming the id.
func TestDuplicateHostIDIsRefused(t *testing.T) {
	skipShort(t)
	c := etcdtest.Start(t, 1, "127.0.0.1")
	mustStartHost(t, "", "twin", etcdArgs(c, "--listen", "127.0.0.1:0", "--frontend-pool", "127.0.153.0/24")...)
	_, err := startHost(t, "", "twin", etcdArgs(c, "--listen", "127.0.0.1:0", "--frontend-pool", "127.0.153.0/24")...)
	if err == nil || !strings.Contains(err.Error(), `"twin" is held by a live host`) {
		t.Fatalf("duplicate host id: %v", err)
	}
}

// With one etcd member of three — the leader — killed with SIGKILL, writes go on
// through the others, and every acknowledged write is there.
func TestWritesGoOnWithoutOneEtcdMember(t *testing.T) {
	skipShort(t)
	c := etcdtest.StartProcesses(t, 3, "127.0.0.1")
	h := mustStartHost(t, "", "w", etcdArgs(c, "--listen", "127.0.0.1:0", "--frontend-pool", "127.0.154.0/24",
		"--etcd-timeout", "5s")...)
	var ids []int
	for i := range 12 {
		if i == 4 {
			c.Kill(c.Leader())
		}
		nb, err := tcpNB(t, h, "write"+string(rune('a'+i)), 8000, "127.0.155.1:9000")
		if err != nil {
			t.Fatalf("write %d (member 0 stopped: %v): %v", i, i >= 4, err)
		}
		ids = append(ids, nb.ID)
	}
	for _, id := range ids {
		if _, err := h.lc.GetNodeBalancer(context.Background(), id); err != nil {
			t.Fatalf("acknowledged NodeBalancer %d: %v", id, err)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitGreets(t *testing.T, dial dialFunc, addr, want string) time.Duration {
	t.Helper()
	start := time.Now()
	var got string
	var err error
	for time.Since(start) < 10*time.Second {
		if got, err = greet(dial, addr); err == nil && got == want {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never answered %q: %q %v", addr, want, got, err)
	return 0
}

// A host compacts etcd's history (heartbeats would fill it otherwise), keeping one
// period of it, and goes on working.
func TestHostCompactsEtcdHistory(t *testing.T) {
	skipShort(t)
	c := etcdtest.Start(t, 1, "127.0.0.1")
	backend(t, "127.0.157.1:9000", "b1")
	h := mustStartHost(t, "", "compactor", etcdArgs(c, "--listen", "127.0.0.1:0", "--frontend-pool", "127.0.156.0/24",
		"--etcd-compact-every", "1s")...)
	if _, err := tcpNB(t, h, "early", 8000, "127.0.157.1:9000"); err != nil {
		t.Fatal(err)
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, 10*time.Second, "etcd's early history compacted", func() bool {
		_, err := cl.Get(context.Background(), "/nodebalancer/", clientv3.WithPrefix(), clientv3.WithRev(2))
		return errors.Is(err, rpctypes.ErrCompacted)
	})
	nb, err := tcpNB(t, h, "late", 8000, "127.0.157.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	waitGreets(t, loopDial, *nb.IPv4+":8000", "b1")
}

// A host reaches etcd over TLS with a client certificate (--etcd-cacert,
// --etcd-cert, --etcd-key); without the client certificate etcd refuses it.
func TestEtcdOverTLS(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	server, client := testcert.New(t, "localhost"), testcert.New(t, "nodebalancer")
	srvCert, srvKey := write("server.pem", server.CertPEM), write("server-key.pem", server.KeyPEM)
	cliCert, cliKey := write("client.pem", client.CertPEM), write("client-key.pem", client.KeyPEM)
	c := etcdtest.StartTLS(t, etcdtest.TLS{CertFile: srvCert, KeyFile: srvKey, ClientCA: cliCert})
	base := []string{"--store", "etcd", "--etcd-endpoints", c.Endpoints()[0], "--etcd-timeout", "2s",
		"--listen", "127.0.0.1:0", "--frontend-pool", "127.0.158.0/24", "--etcd-cacert", srvCert}
	_, err := startHost(t, "", "nocert", base...)
	if err == nil || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("a host without a client certificate: %v", err)
	}
	t.Logf("without a client certificate: %.300s", err)
	h := mustStartHost(t, "", "tls", append(base, "--etcd-cert", cliCert, "--etcd-key", cliKey)...)
	if _, err := tcpNB(t, h, "over-tls", 8000, "127.0.159.1:9000"); err != nil {
		t.Fatal(err)
	}
}
