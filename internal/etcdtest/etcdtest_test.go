package etcdtest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestStartAgainWhenAPortWasTaken: a port that freeURL found free can be taken before
// the member binds it (another test's connection gets it as its ephemeral port); the
// cluster then starts on other ports instead of failing the test.
func TestStartAgainWhenAPortWasTaken(t *testing.T) {
	picks := handOutTakenPort(t, 1, 2) // the first attempt's peer and client URLs
	servesAfterTwoAttempts(t, Start(t, 1, "127.0.0.1"), picks)
}

// TestStartProcessesAgainWhenAPortWasTaken: the same for members in processes of
// their own, which report the taken port before they exit.
func TestStartProcessesAgainWhenAPortWasTaken(t *testing.T) {
	picks := handOutTakenPort(t, 2, 2) // the first attempt's client URL
	servesAfterTwoAttempts(t, StartProcesses(t, 1, "127.0.0.1"), picks)
}

// TestStopHoldsThePortsAndRestartServes: a stopped member refuses connections, as a
// crashed one does, while its ports stay reserved for Restart; Restart serves on them.
func TestStopHoldsThePortsAndRestartServes(t *testing.T) {
	c := Start(t, 1, "127.0.0.1")
	u, err := url.Parse(c.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	if len(c.Members[0].held) != 2 {
		t.Errorf("%d ports held while stopped, want 2 (peer and client)", len(c.Members[0].held))
	}
	if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("dial a stopped member: %v; want it refused", err)
	}
	c.Restart(0)
	if len(c.Members[0].held) != 0 {
		t.Errorf("%d ports still held after Restart", len(c.Members[0].held))
	}
	mustPut(t, c, "after Restart")
}

// handOutTakenPort makes pickURL hand out a port that is listened on for its calls
// from..to (counted from 1), and free ports otherwise, until the test ends; it
// returns the count of calls.
func handOutTakenPort(t *testing.T, from, to int) *int {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	picks := new(int)
	pickURL = func(t testing.TB, host string) url.URL {
		*picks++
		if *picks >= from && *picks <= to {
			return url.URL{Scheme: "http", Host: taken.Addr().String()}
		}
		return freeURL(t, host)
	}
	t.Cleanup(func() {
		pickURL = freeURL
		taken.Close()
	})
	return picks
}

// servesAfterTwoAttempts checks that c, a one-member cluster, was started on the
// second set of ports picked and takes a write.
func servesAfterTwoAttempts(t *testing.T, c *Cluster, picks *int) {
	if *picks != 4 {
		t.Fatalf("ports picked %d times, want 4 (two attempts)", *picks)
	}
	mustPut(t, c, "on the cluster started again")
}

// mustPut writes a key through a client of c; when says when, for the failure.
func mustPut(t *testing.T, c *Cluster, when string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put %s: %v", when, err)
	}
}
