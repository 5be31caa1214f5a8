package etcdtest

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestStartAgainWhenAPortWasTaken: a port that freeURL found free can be taken before
// the member binds it (another test's connection gets it as its ephemeral port); the
// cluster then starts on other ports instead of failing the test.
func TestStartAgainWhenAPortWasTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	picks := 0
	pickURL = func(t testing.TB, host string) url.URL {
		picks++
		if picks <= 2 { // the first attempt's peer and client URLs
			return url.URL{Scheme: "http", Host: taken.Addr().String()}
		}
		return freeURL(t, host)
	}
	defer func() { pickURL = freeURL }()
	c := Start(t, 1, "127.0.0.1")
	if picks != 4 {
		t.Fatalf("ports picked %d times, want 4 (two attempts)", picks)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put on the cluster started again: %v", err)
	}
}

// TestStartProcessesAgainWhenAPortWasTaken: the same for members in processes of
// their own, which report the taken port before they exit.
func TestStartProcessesAgainWhenAPortWasTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	picks := 0
	pickURL = func(t testing.TB, host string) url.URL {
		picks++
		if picks == 2 { // the first attempt's client URL
			return url.URL{Scheme: "http", Host: taken.Addr().String()}
		}
		return freeURL(t, host)
	}
	defer func() { pickURL = freeURL }()
	c := StartProcesses(t, 1, "127.0.0.1")
	if picks != 4 {
		t.Fatalf("ports picked %d times, want 4 (two attempts)", picks)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put on the cluster started again: %v", err)
	}
}
