// Command cluster measures what the etcd store costs against the embedded bbolt one:
// API write latency through the real server (linodego creating NodeBalancers and
// re-weighting nodes), and change propagation from one host's write to another
// host's state mirror (the data plane's input). etcd runs in-process
// (go.etcd.io/etcd/server/v3/embed) with fsync on, on loopback. It prints a
// Markdown report; see bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/linode/linodego"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/server"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
	"github.com/nodebalancer/nodebalancer/internal/store/etcd"
)

const token = "bench-cluster-token-0123456789abcdef"

func main() {
	n := flag.Int("n", 200, "writes per measurement")
	flag.Parse()
	dir, err := os.MkdirTemp("", "bench-cluster-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	endpoint := startEtcd(dir)

	fmt.Printf("# etcd store against bbolt\n\n%s, %d writes per row, etcd %s in-process with fsync, one member, loopback.\n\n",
		time.Now().UTC().Format("2006-01-02"), *n, "v3.7.3")
	fmt.Println("## API write latency (linodego → server → store)")
	fmt.Println()
	fmt.Println("| store | operation | p50 | p99 | mean |")
	fmt.Println("|---|---|---|---|---|")
	for _, st := range []string{server.StoreBolt, server.StoreEtcd} {
		cfg := server.Config{Listen: "127.0.0.1:0", DataDir: dir + "/" + st, Region: "local",
			FrontendPool:   []netip.Prefix{netip.MustParsePrefix("127.0.240.0/22")},
			BackendRanges:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			BootstrapToken: token, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, HostID: "bench",
			Etcd: etcd.Options{Endpoints: []string{endpoint}, Prefix: "/bench/"}}
		apiBench(cfg, st, *n)
	}
	fmt.Println()
	fmt.Println("## Change propagation (write issued on one host → the other host's state mirror, the data plane's input, holds it)")
	fmt.Println()
	fmt.Println("| store | p50 | p99 | mean |")
	fmt.Println("|---|---|---|---|")
	b, err := bolt.Open(dir + "/prop-bolt")
	if err != nil {
		log.Fatal(err)
	}
	propBench("bbolt (one process: writer and follower share it)", b, b, *n)
	open := func() store.Backend {
		e, err := etcd.Open(etcd.Options{Endpoints: []string{endpoint}, Prefix: "/prop/"})
		if err != nil {
			log.Fatal(err)
		}
		return e
	}
	propBench("etcd (two clients, as two hosts)", open(), open(), *n)
}

func startEtcd(dir string) string {
	cfg := embed.NewConfig()
	cfg.Dir = dir + "/etcd"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	u, _ := url.Parse("http://127.0.0.1:23790")
	p, _ := url.Parse("http://127.0.0.1:23800")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*u}, []url.URL{*u}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*p}, []url.URL{*p}
	cfg.InitialCluster = cfg.Name + "=" + p.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatal(err)
	}
	<-e.Server.ReadyNotify()
	return u.String()
}

func stat(d []time.Duration) string {
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	r := func(x time.Duration) string { return x.Round(10 * time.Microsecond).String() }
	return r(d[len(d)/2]) + " | " + r(d[len(d)*99/100]) + " | " + r(sum/time.Duration(len(d)))
}

func apiBench(cfg server.Config, name string, n int) {
	s, err := server.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c := linodego.NewClient(nil)
	c.SetBaseURL("http://" + s.Addr().String()).SetAPIVersion("v4").SetToken(token)
	var create, update []time.Duration
	var last *linodego.NodeBalancer
	for i := range n {
		label := "bench" + strconv.Itoa(i)
		t := time.Now()
		nb, err := c.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Label: &label, Region: "local",
			Configs: []*linodego.NodeBalancerConfigCreateOptions{{Port: 80, Protocol: linodego.ProtocolTCP, Check: linodego.CheckNone,
				Nodes: []linodego.NodeBalancerNodeCreateOptions{{Label: "node1", Address: "127.0.250.1:80", Weight: 10}}}}})
		if err != nil {
			log.Fatal(err)
		}
		create = append(create, time.Since(t))
		last = nb
	}
	cfgs, err := c.ListNodeBalancerConfigs(ctx, last.ID, nil)
	if err != nil {
		log.Fatal(err)
	}
	nodes, err := c.ListNodeBalancerNodes(ctx, last.ID, cfgs[0].ID, nil)
	if err != nil {
		log.Fatal(err)
	}
	for i := range n {
		t := time.Now()
		if _, err := c.UpdateNodeBalancerNode(ctx, last.ID, cfgs[0].ID, nodes[0].ID,
			linodego.NodeBalancerNodeUpdateOptions{Weight: 1 + i%200}); err != nil {
			log.Fatal(err)
		}
		update = append(update, time.Since(t))
	}
	fmt.Printf("| %s | create NodeBalancer (1 config, 1 node) | %s |\n", name, stat(create))
	fmt.Printf("| %s | update a node's weight | %s |\n", name, stat(update))
	cancel()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
}

func propBench(name string, writer, follower store.Backend, n int) {
	w := store.New(writer, store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix("127.0.244.0/22")}})
	f := store.New(follower, store.Options{})
	m := store.NewMirror(f)
	d, err := m.Load()
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := f.Watch(ctx, d.Revision)
	c := model.NewConfig()
	c.Port = 80
	nb, err := w.CreateNodeBalancer(model.NodeBalancer{Region: "local", Label: "prop"}, []model.ConfigWithNodes{{Config: c}})
	if err != nil {
		log.Fatal(err)
	}
	cfgs, _ := w.Configs(nb.ID)
	var took []time.Duration
	for i := range n + 1 {
		t := time.Now()
		nd := model.NewNode()
		nd.Label, nd.Address = "node"+strconv.Itoa(i), "127.0.250.1:"+strconv.Itoa(1000+i)
		made, err := w.CreateNode(nb.ID, cfgs[0].ID, nd)
		if err != nil {
			log.Fatal(err)
		}
		for {
			if cs, ok := m.Config(cfgs[0].ID); ok && len(cs.Nodes) > 0 && cs.Nodes[len(cs.Nodes)-1].ID == made.ID {
				break
			}
			if _, err := m.Apply(<-ch); err != nil {
				log.Fatal(err)
			}
		}
		if i > 0 { // the first includes the watch's start
			took = append(took, time.Since(t))
		}
	}
	fmt.Printf("| %s | %s |\n", name, stat(took))
}
