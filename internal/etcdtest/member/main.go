// Command member runs one etcd member (go.etcd.io/etcd/server/v3/embed) for tests
// that must kill a member with SIGKILL, which an in-process member cannot be. It
// prints "ready" once the member serves, and runs until killed; or "addrinuse" and
// why, and exits, when a port it was given is taken.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func main() {
	name := flag.String("name", "m0", "member name")
	dir := flag.String("dir", "", "data directory")
	client := flag.String("client", "", "client URL")
	peer := flag.String("peer", "", "peer URL")
	initial := flag.String("initial-cluster", "", "name=peerURL,…")
	state := flag.String("state", embed.ClusterStateFlagNew, "new or existing")
	flag.Parse()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.InitialCluster, cfg.ClusterState = *name, *dir, *initial, *state
	cfg.InitialClusterToken = "etcdtest"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.MaxTxnOps, cfg.MaxRequestBytes = 10000, 16<<20
	cfg.TickMs, cfg.ElectionMs = 50, 500
	c, err := url.Parse(*client)
	if err != nil {
		log.Fatal(err)
	}
	p, err := url.Parse(*peer)
	if err != nil {
		log.Fatal(err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*c}, []url.URL{*c}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*p}, []url.URL{*p}
	e, err := embed.StartEtcd(cfg)
	if errors.Is(err, syscall.EADDRINUSE) {
		// The port was taken after the test found it free: the test starts the
		// cluster again on other ports when it reads this line.
		fmt.Println("addrinuse", err)
		os.Exit(1)
	}
	if err != nil {
		log.Fatal(err)
	}
	<-e.Server.ReadyNotify()
	fmt.Println("ready")
	log.Fatal(<-e.Err())
}
