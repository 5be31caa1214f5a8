package etcd_test

import (
	"strconv"
	"sync/atomic"
	"testing"

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
			b, err := etcd.Open(etcd.Options{Endpoints: eps, Prefix: prefix})
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
