// Package server runs one nodebalancer process: it opens the store, makes sure a first
// token exists, and runs the API, the data plane, the health checker and stats under
// one lifetime that ends cleanly when its context does.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nodebalancer/nodebalancer/internal/api"
	"github.com/nodebalancer/nodebalancer/internal/dataplane"
	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
	"github.com/nodebalancer/nodebalancer/web"
)

// Config is everything `nodebalancer serve` is told on its command line.
type Config struct {
	// Listen is the API address (host:port).
	Listen string
	// DataDir holds the embedded store and the bootstrap token file.
	DataDir string
	// FrontendPool is where NodeBalancer ipv4 addresses come from.
	FrontendPool []netip.Prefix
	// BackendRanges are the networks node addresses may use.
	BackendRanges []netip.Prefix
	// Region is the one region this server serves.
	Region string
	// BootstrapToken, when set, becomes the first token of an empty store.
	BootstrapToken string
	// ShutdownGrace bounds how long in-flight work may run after a stop.
	ShutdownGrace time.Duration
	// MaxConns caps concurrent client connections across every listener.
	MaxConns int
	// TCPIdleTimeout, when positive, ends tcp sessions silent that long.
	TCPIdleTimeout time.Duration
	// BackendSource, when valid, is the local address of connections to nodes.
	BackendSource netip.Addr
	// Log receives the server's structured logs.
	Log *slog.Logger
	// Stats tunes the stats sampler (resolutions, persistence interval, clock); zero
	// fields take the production defaults. The server fills in DB, Registry, Health
	// and Log.
	Stats stats.Options
	// AccessLog is where one JSON line per http request and per tcp connection goes:
	// a file path (appended to), or "-" for standard error. Empty turns it off.
	AccessLog string
	// MetricsListen, when set, serves /metrics on this address instead of the API's.
	MetricsListen string
	// MetricsToken makes /metrics require an API token that may read NodeBalancers.
	MetricsToken bool
	// UDPSessionTimeout replaces the read-only udp_session_timeout (2 s), so tests
	// of session expiry need not wait; tests only, no flag sets it.
	UDPSessionTimeout time.Duration
	// MetricsNoNodeSeries leaves per-node series out of /metrics.
	MetricsNoNodeSeries bool
	// MaxNodesPerConfig and MaxNodesPerConfigPremium bound the nodes of a config of
	// a common and a premium NodeBalancer (store defaults when zero).
	MaxNodesPerConfig, MaxNodesPerConfigPremium int
}

// Server is a running nodebalancer.
type Server struct {
	cfg   Config
	db    *store.DB
	ln    net.Listener
	ready atomic.Bool
	// metricsLn is /metrics' own listener when Config.MetricsListen is set.
	metricsLn net.Listener
	// accessOut receives the access log; nil when it is off.
	accessOut io.WriteCloser
	// Token is the bootstrap secret when this start created it, else "".
	Token string
	// TokenFile is where a generated bootstrap token was written.
	TokenFile string
}

// New binds the API listener, opens the store and bootstraps the first token, so a
// caller learns of a bad flag or a busy port before Run.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	s := &Server{cfg: cfg}
	var err error
	s.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if err := s.openExtras(); err != nil {
		s.ln.Close()
		return nil, err
	}
	// The store refuses nodes that point at these listeners, so it opens after them.
	b, err := bolt.Open(cfg.DataDir)
	if err == nil {
		s.db = store.New(b, store.Options{FrontendPool: cfg.FrontendPool, Own: s.listening(),
			MaxNodesPerConfig: cfg.MaxNodesPerConfig, MaxNodesPerConfigPremium: cfg.MaxNodesPerConfigPremium})
		if err = s.bootstrap(); err != nil {
			s.db.Close()
		} else if n, e := s.db.AssignIPv6(); e != nil {
			s.db.Close()
			err = fmt.Errorf("give NodeBalancers an ipv6: %w", e)
		} else if n > 0 {
			cfg.Log.Info("gave existing NodeBalancers an ipv6 from the frontend pool", "count", n)
		}
	}
	if err != nil {
		s.closeListeners()
		return nil, err
	}
	if n, err := s.db.AssignIPv6(); err != nil {
		s.db.Close()
		s.closeListeners()
		return nil, fmt.Errorf("give NodeBalancers an ipv6: %w", err)
	} else if n > 0 {
		cfg.Log.Info("gave existing NodeBalancers an ipv6 from the frontend pool", "count", n)
	}
	return s, nil
}

// closeListeners closes what New opened besides the store, when New fails.
func (s *Server) closeListeners() {
	s.ln.Close()
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
	if s.accessOut != nil {
		s.accessOut.Close()
	}
}

// listening returns the API's and /metrics' bound addresses with this host's own
// addresses, which wildcard listeners answer on.
func (s *Server) listening() model.Listening {
	var l model.Listening
	for _, ln := range []net.Listener{s.ln, s.metricsLn} {
		if a, ok := ln.(*net.TCPListener); ok {
			l.Addrs = append(l.Addrs, a.Addr().(*net.TCPAddr).AddrPort())
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		s.cfg.Log.Warn("cannot list this host's addresses: nodes are checked against loopback only", "err", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			l.Local = append(l.Local, p.Addr().Unmap())
		}
	}
	return l
}

// openExtras binds the metrics listener and opens the access log, when asked for.
func (s *Server) openExtras() error {
	if s.cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics: listen on %s: %w", s.cfg.MetricsListen, err)
		}
		s.metricsLn = ln
	}
	switch s.cfg.AccessLog {
	case "":
	case "-":
		s.accessOut = nopCloser{os.Stderr}
	default:
		f, err := os.OpenFile(s.cfg.AccessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			if s.metricsLn != nil {
				s.metricsLn.Close()
			}
			return fmt.Errorf("access log: %w", err)
		}
		s.accessOut = f
	}
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (s *Server) bootstrap() error {
	secret, err := api.Bootstrap(s.db, s.cfg.BootstrapToken)
	if err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	s.Token = secret
	if secret == "" || s.cfg.BootstrapToken != "" { // tokens existed, or the operator chose it
		return nil
	}
	s.TokenFile = filepath.Join(s.cfg.DataDir, "bootstrap-token")
	if err := os.WriteFile(s.TokenFile, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", s.TokenFile, err)
	}
	s.cfg.Log.Info("generated the first API token", "file", s.TokenFile)
	return nil
}

// Addr is the API's bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// statusSource answers the API's node status questions from the health checker.
type statusSource struct{ c *health.Checker }

func (s statusSource) NodeStatus(_, nodeID int) model.NodeStatus { return s.c.Status(nodeID) }

// cookieKey returns this host's key for sticky-cookie values, made on first start and
// kept in the store so cookies stay valid across restarts.
func cookieKey(db *store.DB) ([]byte, error) {
	k, err := db.Blob("cookie-key")
	if err != nil || len(k) == 32 {
		return k, err
	}
	k = make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, db.PutBlob("cookie-key", k)
}

// healthz answers 200 "ok" when every config listens, 503 "starting" before the
// first state is applied, and 503 "degraded" with one line per config whose port
// cannot be bound. Degraded is 503 rather than 200: the server does not serve all it
// was told to, and a probe or alert should see that without parsing the body.
func (s *Server) healthz(w http.ResponseWriter, plane *dataplane.Plane) {
	if !s.ready.Load() || !plane.Ready() {
		http.Error(w, "starting\n", http.StatusServiceUnavailable)
		return
	}
	failed := plane.Failed()
	if len(failed) == 0 {
		w.Write([]byte("ok\n"))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "degraded: %d config(s) cannot listen\n", len(failed))
	for _, f := range failed {
		fmt.Fprintf(&b, "config %d of nodebalancer %d on %s: %v (failing since %s, %d attempts)\n",
			f.ConfigID, f.NodeBalancerID, f.Addr, f.Err, f.Since.UTC().Format(time.RFC3339), f.Attempts)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(b.String()))
}

// Run serves until ctx ends, then stops accepting, lets in-flight work finish within
// the shutdown grace and closes the store.
func (s *Server) Run(ctx context.Context) error {
	defer s.db.Close()
	key, err := cookieKey(s.db)
	if err != nil {
		return fmt.Errorf("cookie key: %w", err)
	}
	if s.accessOut != nil {
		defer s.accessOut.Close()
	}
	if s.metricsLn != nil {
		defer s.metricsLn.Close()
	}
	var plane *dataplane.Plane
	var checker *health.Checker
	counters := stats.NewRegistry()
	// The data plane keeps the mirror current; /metrics reads its labels from it.
	mirror := store.NewMirror(s.db)
	so := s.cfg.Stats
	so.DB, so.Registry, so.Log, so.Mirror = s.db, counters, s.cfg.Log, mirror
	so.NoNodeSeries = so.NoNodeSeries || s.cfg.MetricsNoNodeSeries
	so.HealthOf = func(id int) (health.NodeStats, bool) { return checker.NodeStats(id) }
	so.HealthCounts = func(id int) health.Counts { return checker.Counts(id) }
	so.Listener = func(id int) model.ListenerStatus { return plane.ListenerStatus(id) }
	st, err := stats.New(so)
	if err != nil {
		return err
	}
	checker = health.New(health.Options{
		Source:   s.cfg.BackendSource,
		Logger:   s.cfg.Log,
		OnChange: func(configID int) { plane.StatusChanged(configID) },
		Observer: st,
	})
	drops := firewall.NewDrops()
	st.SetFirewallDrops(drops)
	popts := dataplane.Options{
		Log:           s.cfg.Log,
		MaxConns:      s.cfg.MaxConns,
		BackendSource: s.cfg.BackendSource,
		Grace:         s.cfg.ShutdownGrace,
		Timeouts:      dataplane.Timeouts{TCPIdle: s.cfg.TCPIdleTimeout},
		CookieKey:     key,
		Health:        checker,
		Stats:         counters,
		FirewallDrops: drops,
		Mirror:        mirror,

		UDPSessionTimeout: s.cfg.UDPSessionTimeout,
	}
	var accessLog *stats.AccessLog
	if s.accessOut != nil {
		accessLog = stats.NewAccessLog(s.accessOut, 0)
		st.SetAccessLog(accessLog)
		popts.AccessLog, popts.TCPAccessLog, popts.UDPAccessLog, popts.DropLog = accessLog.HTTP, accessLog.TCP, accessLog.UDP, accessLog.FirewallDrop
	}
	plane = dataplane.New(popts)

	policy := model.Policy{Region: s.cfg.Region, BackendRanges: s.cfg.BackendRanges}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { s.healthz(w, plane) })
	apiHandler := api.New(api.Options{DB: s.db, Policy: policy, Log: s.cfg.Log, Status: statusSource{checker},
		Stats: st, Transfer: st, Listeners: plane})
	mux.Handle("/v4/", apiHandler)
	mux.Handle("/v4beta/", apiHandler)
	mux.Handle("/", web.Handler())
	metrics := st.MetricsHandler()
	if s.cfg.MetricsToken {
		metrics = apiHandler.RequireRead(metrics)
	}
	var metricsSrv *http.Server
	if s.metricsLn == nil {
		mux.Handle("GET /metrics", metrics)
	} else {
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", metrics)
		metricsSrv = &http.Server{Handler: mm, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn)}
	}
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn),
	}

	// The checker outlives the data plane: the plane's final drain may still report.
	checkCtx, stopChecks := context.WithCancel(context.Background())
	defer stopChecks()
	checkDone := make(chan error, 1)
	go func() { checkDone <- checker.Run(checkCtx) }()
	// So do the stats sampler and the access log writer: the last bytes of draining
	// connections still count, and the sampler persists after them.
	statsCtx, stopStats := context.WithCancel(context.Background())
	defer stopStats()
	statsDone, accessDone := make(chan error, 1), make(chan error, 1)
	go func() { statsDone <- st.Run(statsCtx) }()
	if accessLog != nil {
		go func() { accessDone <- accessLog.Run(statsCtx) }()
	} else {
		accessDone <- nil
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return plane.Run(gctx, s.db) })
	g.Go(func() error {
		if err := hs.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	})
	if metricsSrv != nil {
		g.Go(func() error {
			if err := metricsSrv.Serve(s.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
			defer cancel()
			return metricsSrv.Shutdown(sctx)
		})
	}
	s.ready.Store(true)
	s.cfg.Log.Info("nodebalancer ready", "api", "http://"+s.ln.Addr().String())
	g.Go(func() error {
		<-gctx.Done()
		s.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	err = g.Wait()
	stopChecks()
	stopStats()
	return errors.Join(err, <-checkDone, <-statsDone, <-accessDone)
}
