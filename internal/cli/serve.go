package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/dataplane"
	"github.com/nodebalancer/nodebalancer/internal/ha"
	"github.com/nodebalancer/nodebalancer/internal/server"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/etcd"
)

// version is this build's module version and VCS revision, as Go recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// serveFlags are the flags of `serve` before they are parsed into a server.Config.
type serveFlags struct {
	listen, data, frontendPool, backendCIDRs, region, logLevel, backendSource string
	grace, tcpIdle                                                            time.Duration
	tcpEngine                                                                 string
	maxConns                                                                  int
	accessLog, metricsListen                                                  string
	metricsToken, metricsNodeSeries                                           bool
	maxNodes, maxNodesPremium                                                 int
	// The store: bolt under --data, or etcd shared by several hosts.
	store, etcdEndpoints, etcdPrefix, etcdCA, etcdCert, etcdKey, hostID string
	etcdTimeout, statsPersist, etcdCompact                              time.Duration
	// High availability and the API over TLS.
	frontendInterface, apiTLSCert, apiTLSKey string
	frontendLease                            time.Duration
	frontendPeerPort                         int
	// Parking of idle http connections (--http-park).
	httpPark bool
	// How long the tcp engine's loops wait in their own epoll set (--tcp-own-wait).
	tcpOwnWait, tcpBusyPoll time.Duration
	// Adapting the number of Ps to the CPU the host leaves (--adapt-procs).
	adaptProcs bool
	// fs tells which flags were given (--metrics-require-token's default depends on
	// --listen).
	fs *pflag.FlagSet
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the load balancer: API, data plane, health checks and stats",
		Long: `Run the load balancer on the embedded store under --data, or, with --store etcd,
as one of several hosts sharing one configuration in etcd (see README "Several hosts").

On first start with an empty store, NODEBALANCER_BOOTSTRAP_TOKEN (if set) becomes the
first token (scope *); otherwise one is generated and written to <data>/bootstrap-token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			cfg.BootstrapToken = os.Getenv("NODEBALANCER_BOOTSTRAP_TOKEN")
			s, err := server.New(cfg)
			if err != nil {
				return err
			}
			if s.TokenFile != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "First API token written to %s\n", s.TokenFile)
			}
			return s.Run(cmd.Context())
		},
	}
	f.bind(cmd.Flags())
	return cmd
}

// bind defines serve's flags on fl, storing into f.
func (f *serveFlags) bind(fl *pflag.FlagSet) {
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "API address (host:port)")
	fl.StringVar(&f.data, "data", "./nodebalancer-data", "data directory: the embedded store, and the generated first token (either store)")
	fl.StringVar(&f.frontendPool, "frontend-pool", "127.0.1.0/24", "CIDRs (comma separated) NodeBalancer addresses come from: each gets an ipv4 and, when an IPv6 network is listed, an ipv6")
	fl.StringVar(&f.backendCIDRs, "backend-cidrs", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7,127.0.0.0/8,::1/128",
		"CIDRs (comma separated) node addresses may use")
	fl.StringVar(&f.region, "region", "local", "the region this server serves")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.IntVar(&f.maxConns, "max-conns", 10000, "cap on concurrent client connections across every listener")
	fl.StringVar(&f.backendSource, "backend-source", "", "local IP address for connections to nodes (default: chosen by the system)")
	fl.DurationVar(&f.grace, "shutdown-grace", 10*time.Second, "how long in-flight work may finish after SIGTERM")
	fl.BoolVar(&f.httpPark, "http-park", true, "park idle plain-http keep-alive connections in an epoll set, without a goroutine or buffers (Linux; false keeps a goroutine per idle connection)")
	fl.DurationVar(&f.tcpIdle, "tcp-idle-timeout", 0, "end a tcp session after this long with no byte moving either way (0: never; dead peers are found by keep-alive within 120 s)")
	fl.StringVar(&f.tcpEngine, "tcp-engine", dataplane.TCPEngineEpoll, "how tcp configs are served: epoll (event loops of their own, no goroutine per session; Linux only, elsewhere goroutine) or goroutine (two goroutines per session over Go's net package)")
	fl.DurationVar(&f.tcpOwnWait, "tcp-own-wait", 0, "with --tcp-engine epoll, how long an event loop that ran out of events waits for more in its own epoll set, keeping its thread, before it parks in Go's poller (0: parks at once; at most 1ms; Linux 5.11)")
	fl.DurationVar(&f.tcpBusyPoll, "tcp-busy-poll", 0, "with --tcp-engine epoll, how long an event loop that ran out of events looks for more without sleeping, before --tcp-own-wait (0: not at all; at most 200us)")
	fl.BoolVar(&f.adaptProcs, "adapt-procs", true, "run fewer threads of Go code (GOMAXPROCS) while the host's CPUs are oversubscribed (this process's threads wait for a CPU as long as they run), and more again when the host has a CPU idle; Linux (default true, false when the environment sets GOMAXPROCS)")
	fl.StringVar(&f.accessLog, "access-log", "", `access log (one JSON line per http request or tcp connection): a file path, or "-" for stderr; off when empty`)
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus /metrics on this address (host:port) instead of the API's")
	fl.BoolVar(&f.metricsToken, "metrics-require-token", false, "make /metrics require an API token with nodebalancers:read_only or better (default true when --listen or --metrics-listen is not a loopback address)")
	fl.BoolVar(&f.metricsNodeSeries, "metrics-node-series", true, "export per-node series on /metrics (false keeps the per-NodeBalancer and per-config ones)")
	fl.IntVar(&f.maxNodes, "max-nodes-per-config", store.DefaultMaxNodesPerConfig, "most nodes a config of a common NodeBalancer may have")
	fl.IntVar(&f.maxNodesPremium, "max-nodes-per-config-premium", store.DefaultMaxNodesPerConfigPremium, "most nodes a config of a premium NodeBalancer may have")
	fl.StringVar(&f.store, "store", server.StoreBolt, "where the configuration lives: bolt (a file under --data) or etcd (shared by several hosts)")
	fl.StringVar(&f.etcdEndpoints, "etcd-endpoints", "", "etcd client URLs, comma separated (with --store etcd), e.g. http://127.0.0.1:2379")
	fl.StringVar(&f.etcdPrefix, "etcd-prefix", etcd.DefaultPrefix, "key prefix of this cluster in etcd")
	fl.StringVar(&f.etcdCA, "etcd-cacert", "", "CA certificate (PEM) that etcd's server certificate must chain to")
	fl.StringVar(&f.etcdCert, "etcd-cert", "", "client certificate (PEM) to present to etcd (with --etcd-key)")
	fl.StringVar(&f.etcdKey, "etcd-key", "", "key (PEM) of --etcd-cert")
	fl.DurationVar(&f.etcdCompact, "etcd-compact-every", 5*time.Minute, "compact etcd's history every this often, keeping that much of it (0: leave it to etcd's --auto-compaction-retention)")
	fl.DurationVar(&f.etcdTimeout, "etcd-timeout", 5*time.Second, "bound of one store operation on etcd; past it the API answers 503")
	fl.StringVar(&f.hostID, "host-id", "", "this host's name in the cluster, unique among the hosts (default: the hostname)")
	fl.StringVar(&f.frontendInterface, "frontend-interface", "", "with --store etcd: the hosts elect one holder of the frontend addresses, which adds them to this interface and announces them (ARP, NDP); empty: the addresses must be local already")
	fl.IntVar(&f.frontendPeerPort, "frontend-peer-port", ha.DefaultPeerPort, "with --frontend-interface: UDP port of the hosts' heartbeats, broadcast on that interface, with which a holder keeps the addresses through an etcd outage that every host sees (0: it lets them go, as when it alone is cut off)")
	fl.DurationVar(&f.frontendLease, "frontend-lease", ha.DefaultTTL, "lease of the frontend addresses' holder: how soon another host takes over when it dies (whole seconds, 2s or more)")
	fl.StringVar(&f.apiTLSCert, "api-tls-cert", "", "serve the API over TLS with this certificate (PEM, with --api-tls-key); SIGHUP reads it again")
	fl.StringVar(&f.apiTLSKey, "api-tls-key", "", "key (PEM) of --api-tls-cert")
	f.fs = fl
	fl.DurationVar(&f.statsPersist, "stats-persist-every", 0, "how often stats are written to the store besides at shutdown (default 1m; 10s with --store etcd, so that other hosts add this one's traffic that recently)")
}

// storeConfig fills cfg's store settings from the store flags.
func (f *serveFlags) storeConfig(cfg *server.Config) error {
	host := f.hostID
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--host-id: the hostname is unknown (%v): name this host", err)
		}
		host = h
	}
	if strings.ContainsAny(host, "/ \t\n") {
		return fmt.Errorf("--host-id: %q must not contain '/' or spaces", host)
	}
	cfg.HostID, cfg.Store = host, f.store
	etcdSet := f.etcdEndpoints != "" || f.etcdCA != "" || f.etcdCert != "" || f.etcdKey != ""
	switch f.store {
	case "", server.StoreBolt:
		if etcdSet {
			return fmt.Errorf("--etcd-* flags need --store etcd")
		}
		return nil
	case server.StoreEtcd:
	default:
		return fmt.Errorf("--store: %q is not bolt or etcd", f.store)
	}
	for _, e := range strings.Split(f.etcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--etcd-endpoints: %q is not a URL such as http://127.0.0.1:2379", e)
		}
		cfg.Etcd.Endpoints = append(cfg.Etcd.Endpoints, e)
	}
	if len(cfg.Etcd.Endpoints) == 0 {
		return fmt.Errorf("--store etcd needs --etcd-endpoints")
	}
	if !strings.HasPrefix(f.etcdPrefix, "/") || !strings.HasSuffix(f.etcdPrefix, "/") {
		return fmt.Errorf("--etcd-prefix: %q must begin and end with '/'", f.etcdPrefix)
	}
	if f.etcdTimeout < 100*time.Millisecond {
		return fmt.Errorf("--etcd-timeout must be at least 100ms")
	}
	if f.etcdCompact != 0 && f.etcdCompact < time.Second {
		return fmt.Errorf("--etcd-compact-every must be 0 or at least 1s")
	}
	cfg.Etcd.Prefix, cfg.Etcd.Timeout, cfg.EtcdCompactEvery = f.etcdPrefix, f.etcdTimeout, f.etcdCompact
	tc, err := etcdTLS(f.etcdCA, f.etcdCert, f.etcdKey)
	if err != nil {
		return err
	}
	cfg.Etcd.TLS = tc
	return nil
}

// etcdTLS builds the TLS settings of the etcd client; nil when no flag asks for TLS.
func etcdTLS(ca, cert, key string) (*tls.Config, error) {
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert: %s holds no PEM certificate", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("--etcd-cert and --etcd-key go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

func (f *serveFlags) config() (server.Config, error) {
	var cfg server.Config
	var err error
	if cfg.FrontendPool, err = parsePrefixes("--frontend-pool", f.frontendPool); err != nil {
		return cfg, err
	}
	has4 := false
	for _, p := range cfg.FrontendPool {
		has4 = has4 || p.Addr().Is4()
	}
	if !has4 {
		return cfg, fmt.Errorf("--frontend-pool: at least one IPv4 network is needed (every NodeBalancer has an ipv4); IPv6 networks may be listed beside it")
	}
	if cfg.BackendRanges, err = parsePrefixes("--backend-cidrs", f.backendCIDRs); err != nil {
		return cfg, err
	}
	if f.region == "" {
		return cfg, fmt.Errorf("--region must not be empty")
	}
	if f.grace < 0 {
		return cfg, fmt.Errorf("--shutdown-grace must not be negative")
	}
	if f.tcpIdle < 0 {
		return cfg, fmt.Errorf("--tcp-idle-timeout must not be negative (0 turns it off)")
	}
	if f.tcpIdle > 0 && f.tcpIdle < time.Second {
		return cfg, fmt.Errorf("--tcp-idle-timeout must be at least 1s (or 0 to turn it off)")
	}
	cfg.TCPIdleTimeout = f.tcpIdle
	cfg.NoHTTPPark = !f.httpPark
	if f.tcpOwnWait < 0 || f.tcpOwnWait > time.Millisecond {
		return cfg, fmt.Errorf("--tcp-own-wait must be between 0 and 1ms")
	}
	cfg.TCPOwnWait = f.tcpOwnWait
	if f.tcpBusyPoll < 0 || f.tcpBusyPoll > 200*time.Microsecond {
		return cfg, fmt.Errorf("--tcp-busy-poll must be between 0 and 200us")
	}
	cfg.TCPBusyPoll = f.tcpBusyPoll
	cfg.AdaptProcs = f.adaptProcs
	if f.fs == nil || !f.fs.Changed("adapt-procs") {
		// A GOMAXPROCS set in the environment is a choice made for this host: keep it.
		cfg.AdaptProcs = f.adaptProcs && os.Getenv("GOMAXPROCS") == ""
	}
	switch f.tcpEngine {
	case "", dataplane.TCPEngineEpoll, dataplane.TCPEngineGoroutine:
		cfg.TCPEngine = f.tcpEngine
	default:
		return cfg, fmt.Errorf("--tcp-engine: %q is not epoll or goroutine", f.tcpEngine)
	}
	if f.maxConns < 1 {
		return cfg, fmt.Errorf("--max-conns must be at least 1")
	}
	cfg.MaxConns = f.maxConns
	for _, x := range []struct {
		flag string
		v    int
	}{{"--max-nodes-per-config", f.maxNodes}, {"--max-nodes-per-config-premium", f.maxNodesPremium}} {
		if x.v < 1 || x.v > balance.MaxNodes {
			return cfg, fmt.Errorf("%s must be between 1 and %d", x.flag, balance.MaxNodes)
		}
	}
	cfg.MaxNodesPerConfig, cfg.MaxNodesPerConfigPremium = f.maxNodes, f.maxNodesPremium
	cfg.MetricsNoNodeSeries = !f.metricsNodeSeries
	if f.backendSource != "" {
		a, err := netip.ParseAddr(f.backendSource)
		if err != nil {
			return cfg, fmt.Errorf("--backend-source: %q is not an IP address", f.backendSource)
		}
		cfg.BackendSource = a
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", f.logLevel)
	}
	cfg.Listen, cfg.DataDir, cfg.Region, cfg.ShutdownGrace = f.listen, f.data, f.region, f.grace
	cfg.AccessLog, cfg.MetricsListen, cfg.MetricsToken = f.accessLog, f.metricsListen, f.metricsToken
	if f.fs == nil || !f.fs.Changed("metrics-require-token") {
		// /metrics names every NodeBalancer, node address and traffic figure: on an
		// address others can reach it asks for a token unless told otherwise.
		cfg.MetricsToken = !isLoopback(f.listen) || (f.metricsListen != "" && !isLoopback(f.metricsListen))
	}
	if (f.apiTLSCert == "") != (f.apiTLSKey == "") {
		return cfg, fmt.Errorf("--api-tls-cert and --api-tls-key go together")
	}
	cfg.APITLSCert, cfg.APITLSKey = f.apiTLSCert, f.apiTLSKey
	if f.frontendInterface != "" {
		if f.store != server.StoreEtcd {
			return cfg, fmt.Errorf("--frontend-interface needs --store etcd: the hosts elect the addresses' holder through etcd")
		}
		if f.frontendLease < 2*time.Second || f.frontendLease%time.Second != 0 {
			return cfg, fmt.Errorf("--frontend-lease: %s must be whole seconds, 2s or more (etcd leases count seconds)", f.frontendLease)
		}
		if f.frontendPeerPort < 0 || f.frontendPeerPort > 65535 {
			return cfg, fmt.Errorf("--frontend-peer-port: %d is not a port (1 to 65535, or 0 for none)", f.frontendPeerPort)
		}
	}
	cfg.FrontendInterface, cfg.FrontendLease, cfg.FrontendPeerPort = f.frontendInterface, f.frontendLease, f.frontendPeerPort
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Version = version()
	if f.statsPersist < 0 {
		return cfg, fmt.Errorf("--stats-persist-every must not be negative")
	}
	cfg.Stats.PersistEvery = f.statsPersist
	return cfg, f.storeConfig(&cfg)
}

// isLoopback reports whether the host of addr (host:port) is a loopback address or
// "localhost"; an empty host (every address) is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func parsePrefixes(flag, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR such as 10.0.0.0/8", flag, part)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s must name at least one CIDR", flag)
	}
	return out, nil
}
