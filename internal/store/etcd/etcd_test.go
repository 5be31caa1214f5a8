package etcd_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/etcdtest"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/etcd"
	"github.com/nodebalancer/nodebalancer/internal/store/storetest"
)

var prefixes atomic.Int64

// conformance runs the suite on cluster c, each test under its own prefix, with
// two clients as two hosts would have.
func conformance(t *testing.T, c *etcdtest.Cluster) {
	storetest.Run(t, func(t *testing.T) (store.Backend, store.Backend) {
		prefix := "/t" + strconv.FormatInt(prefixes.Add(1), 10) + "/"
		eps := c.Endpoints()
		open := func(eps []string) store.Backend {
			// The suite checks correctness: a storm's retries on a loaded machine
			// may take longer than the production bound.
			b, err := etcd.Open(etcd.Options{Endpoints: eps, Prefix: prefix, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}
		// Each host talks to its own member first, as hosts beside their member would.
		return open(eps), open(append(eps[len(eps)-1:], eps[:len(eps)-1]...))
	})
}

func TestConformanceOneMember(t *testing.T) {
	conformance(t, etcdtest.Start(t, 1, "127.0.0.1"))
}

func TestConformanceThreeMembers(t *testing.T) {
	conformance(t, etcdtest.Start(t, 3, "127.0.0.1"))
}

// A host whose etcd member was away while the others wrote and compacted cannot
// learn what changed key by key: its feed resets, and a reload finds everything.
func TestWatchBehindACompactionResets(t *testing.T) {
	c := etcdtest.Start(t, 3, "127.0.0.1")
	eps := c.Endpoints()
	open := func(eps []string) *etcd.Backend {
		b, err := etcd.Open(etcd.Options{Endpoints: eps, Prefix: "/compact/"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	lagging, writer := open(eps[:1]), open(eps[1:])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev, err := lagging.Revision()
	if err != nil {
		t.Fatal(err)
	}
	w := lagging.Watch(ctx, rev)
	c.Stop(0)
	for i := 1; i <= 5; i++ {
		if err := writer.Update(func(tx store.Tx) error {
			return tx.Put(store.KindNodeBalancer, store.Key(i), []byte(`{"id":`+strconv.Itoa(i)+`}`))
		}); err != nil {
			t.Fatal(err)
		}
	}
	now, err := writer.Revision()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Client().Compact(ctx, int64(now)); err != nil {
		t.Fatal(err)
	}
	c.Restart(0)
	select {
	case ch := <-w:
		if !ch.Reset || ch.Revision < now {
			t.Fatalf("change after a compaction: %+v, want a Reset at %d or later", ch, now)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no change within 20 s of the member's return")
	}
	n := 0
	if err := lagging.View(func(tx store.Tx) error {
		return tx.Scan(store.KindNodeBalancer, nil, func(_, _ []byte) error { n++; return nil })
	}); err != nil || n != 5 {
		t.Fatalf("reload after the reset: %d NodeBalancers, %v", n, err)
	}
}

// With its only member gone, an operation fails with store.ErrUnavailable within
// the timeout, and the backend says why.
func TestUnreachableEtcdIsUnavailable(t *testing.T) {
	c := etcdtest.Start(t, 1, "127.0.0.1")
	b, err := etcd.Open(etcd.Options{Endpoints: c.Endpoints(), Prefix: "/down/", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c.Stop(0)
	start := time.Now()
	err = b.Update(func(tx store.Tx) error { return tx.Put(store.KindBlob, []byte("k"), []byte("v")) })
	if !errors.Is(err, store.ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("update without etcd: %v after %v", err, time.Since(start))
	}
	if b.Unreachable() == "" {
		t.Fatal("no reason recorded")
	}
	c.Restart(0)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := b.Revision(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("etcd never reachable again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := b.Unreachable(); r != "" {
		t.Fatalf("still unreachable after a success: %s", r)
	}
}
