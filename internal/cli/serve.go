package cli

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/server"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// serveFlags are the flags of `serve` before they are parsed into a server.Config.
type serveFlags struct {
	listen, data, frontendPool, backendCIDRs, region, logLevel, backendSource string
	grace, tcpIdle                                                            time.Duration
	maxConns                                                                  int
	accessLog, metricsListen                                                  string
	metricsToken, metricsNodeSeries                                           bool
	maxNodes, maxNodesPremium                                                 int
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the load balancer: API, data plane, health checks and stats",
		Long: `Run the load balancer on the embedded store under --data.

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
	fl.StringVar(&f.data, "data", "./nodebalancer-data", "data directory of the embedded store")
	fl.StringVar(&f.frontendPool, "frontend-pool", "127.0.1.0/24", "CIDRs (comma separated) NodeBalancer addresses come from: each gets an ipv4 and, when an IPv6 network is listed, an ipv6")
	fl.StringVar(&f.backendCIDRs, "backend-cidrs", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7,127.0.0.0/8,::1/128",
		"CIDRs (comma separated) node addresses may use")
	fl.StringVar(&f.region, "region", "local", "the region this server serves")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.IntVar(&f.maxConns, "max-conns", 10000, "cap on concurrent client connections across every listener")
	fl.StringVar(&f.backendSource, "backend-source", "", "local IP address for connections to nodes (default: chosen by the system)")
	fl.DurationVar(&f.grace, "shutdown-grace", 10*time.Second, "how long in-flight work may finish after SIGTERM")
	fl.DurationVar(&f.tcpIdle, "tcp-idle-timeout", 0, "end a tcp session after this long with no byte moving either way (0: never; dead peers are found by keep-alive within 120 s)")
	fl.StringVar(&f.accessLog, "access-log", "", `access log (one JSON line per http request or tcp connection): a file path, or "-" for stderr; off when empty`)
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus /metrics on this address (host:port) instead of the API's")
	fl.BoolVar(&f.metricsToken, "metrics-require-token", false, "make /metrics require an API token with nodebalancers:read_only or better")
	fl.BoolVar(&f.metricsNodeSeries, "metrics-node-series", true, "export per-node series on /metrics (false keeps the per-NodeBalancer and per-config ones)")
	fl.IntVar(&f.maxNodes, "max-nodes-per-config", store.DefaultMaxNodesPerConfig, "most nodes a config of a common NodeBalancer may have")
	fl.IntVar(&f.maxNodesPremium, "max-nodes-per-config-premium", store.DefaultMaxNodesPerConfigPremium, "most nodes a config of a premium NodeBalancer may have")
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
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
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
