// Command prof profiles the data plane's start in-process: it stores -nbs
// NodeBalancers of -configs tcp configs of -nodes nodes (default 50 × 1 × 1,000;
// check none, loopback data no traffic reaches) in a temporary store, then times Mirror.Load and Plane.Apply of the whole state and
// writes a CPU profile (/tmp/nbprof-start.pprof) and a heap profile
// (/tmp/nbprof-heap.pprof) for `go tool pprof`.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/dataplane"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "prof:", err)
		os.Exit(1)
	}
}

func run() error {
	nbs := flag.Int("nbs", 50, "NodeBalancers")
	configs := flag.Int("configs", 1, "configs per NodeBalancer")
	nodes := flag.Int("nodes", 1000, "nodes per config")
	flag.Parse()
	dir, err := os.MkdirTemp("", "nbprof")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := bolt.Open(dir)
	if err != nil {
		return err
	}
	db := store.New(b, store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix("127.0.231.0/24")}})
	defer db.Close()
	k := 0
	for range *nbs {
		var cfgs []model.ConfigWithNodes
		for ci := range *configs {
			c := model.NewConfig()
			c.Port, c.Protocol = 80+ci, model.ProtocolTCP
			var ns []model.Node
			for j := range *nodes {
				n := model.NewNode()
				n.Label, n.Address = fmt.Sprintf("node%d", j), fmt.Sprintf("127.0.240.%d:%d", 1+k%250, 10000+k/250)
				k++
				ns = append(ns, n)
			}
			cfgs = append(cfgs, model.ConfigWithNodes{Config: c, Nodes: ns})
		}
		if _, err := db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, cfgs); err != nil {
			return err
		}
	}
	f, err := os.Create("/tmp/nbprof-start.pprof")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	t0 := time.Now()
	m := store.NewMirror(db)
	d, err := m.Load()
	if err != nil {
		return err
	}
	load := time.Since(t0)
	// Five planes one after the other, for enough samples; the last is timed.
	var p *dataplane.Plane
	var apply time.Duration
	for range 5 {
		if p != nil {
			p.Close()
		}
		p = dataplane.New(dataplane.Options{Log: slog.New(slog.DiscardHandler)})
		t1 := time.Now()
		p.Apply(m, d)
		apply = time.Since(t1)
	}
	pprof.StopCPUProfile()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("Mirror.Load %v, Plane.Apply %v, %d listeners, live heap %d MiB\n", load, apply, len(p.Listening()), ms.HeapAlloc>>20)
	hf, err := os.Create("/tmp/nbprof-heap.pprof")
	if err != nil {
		return err
	}
	defer hf.Close()
	p.Close()
	return pprof.WriteHeapProfile(hf)
}
