package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nodebalancer/nodebalancer/internal/etcdtest"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

func TestCombineIsMajorityOfLiveHosts(t *testing.T) {
	up, down := model.StatusUp, model.StatusDown
	live := map[string]bool{"a": true, "b": true, "c": true}
	tests := []struct {
		name  string
		views map[string]model.NodeStatus
		own   model.NodeStatus
		want  model.NodeStatus
	}{
		{"no view yet: own", nil, up, up},
		{"all up", map[string]model.NodeStatus{"a": up, "b": up, "c": up}, down, up},
		{"two of three up", map[string]model.NodeStatus{"a": up, "b": up, "c": down}, down, up},
		{"one of three up", map[string]model.NodeStatus{"a": up, "b": down, "c": down}, up, down},
		{"tie is down", map[string]model.NodeStatus{"a": up, "b": down}, up, down},
		{"dead host not counted", map[string]model.NodeStatus{"a": up, "gone": down}, down, up},
		{"only dead hosts: own", map[string]model.NodeStatus{"gone": down}, up, up},
	}
	for _, tt := range tests {
		if got := combine(tt.views, live, tt.own); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func client(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestHostsShareViewsAndRefuseADuplicateID(t *testing.T) {
	c := etcdtest.Start(t, 1, "127.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	views := map[string]map[int]model.NodeStatus{
		"a": {1: model.StatusUp, 2: model.StatusUp},
		"b": {1: model.StatusUp, 2: model.StatusDown},
	}
	members := map[string]*Member{}
	done := make(chan struct{}, 2)
	for _, id := range []string{"a", "b"} {
		m, err := Join(ctx, Options{Client: client(t, c), Prefix: "/p/", HostID: id, Version: "test", API: id + ":8080",
			TTL: time.Second, Every: 100 * time.Millisecond,
			Views: func() map[int]model.NodeStatus { return views[id] }})
		if err != nil {
			t.Fatal(err)
		}
		members[id] = m
		go func() { m.Run(ctx); done <- struct{}{} }()
	}
	// Each host reads every view, its own included, back from etcd: each combines
	// them once it has read both (a host that has read only a's view still says UP).
	// Node 1 is UP on both hosts' views, node 2 UP on one and DOWN on the other: a
	// tie, so DOWN. The own status passed is the opposite, so it shows if used.
	for id, m := range members {
		deadline := time.Now().Add(5 * time.Second)
		for m.Status(1, model.StatusDown) != model.StatusUp || m.Status(2, model.StatusUp) != model.StatusDown ||
			len(m.LiveHosts()) != 2 {
			if time.Now().After(deadline) {
				t.Fatalf("views never combined on host %s: node 1 %s, node 2 %s; live hosts %v", id,
					m.Status(1, model.StatusDown), m.Status(2, model.StatusUp), m.LiveHosts())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	hosts, err := members["b"].Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].ID != "a" || !hosts[1].Self || hosts[0].HeartbeatAge > 2 {
		t.Fatalf("hosts %+v %v", hosts, err)
	}
	start := time.Now()
	_, err = Join(ctx, Options{Client: client(t, c), Prefix: "/p/", HostID: "a", TTL: time.Second})
	if !errors.Is(err, ErrDuplicateHost) {
		t.Fatalf("duplicate id: %v", err)
	}
	t.Logf("duplicate refused after %v: %v", time.Since(start), err)
	// A host that leaves is no longer counted: node 2 is then b's view alone.
	cancel()
	<-done
	<-done
}
