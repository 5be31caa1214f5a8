// Package server runs one nodebalancer process: it opens the store, makes sure a first
// token exists, and runs the API, the data plane, the health checker and stats under
// one lifetime that ends cleanly when its context does.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nodebalancer/nodebalancer/internal/api"
	"github.com/nodebalancer/nodebalancer/internal/cluster"
	"github.com/nodebalancer/nodebalancer/internal/dataplane"
	"github.com/nodebalancer/nodebalancer/internal/firewall"
	"github.com/nodebalancer/nodebalancer/internal/ha"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/procs"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
	"github.com/nodebalancer/nodebalancer/internal/store/etcd"
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
	// TCPEngine is how tcp configs are served (dataplane.Options.TCPEngine).
	TCPEngine string
	// TCPOwnWait is dataplane.Options.TCPOwnWait.
	TCPOwnWait time.Duration
	// TCPBusyPoll is dataplane.Options.TCPBusyPoll.
	TCPBusyPoll time.Duration
	// AdaptProcs has the number of Ps follow the CPU the host leaves (package
	// procs), between 1 and the count Go chose at start.
	AdaptProcs bool
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
	// NoHTTPPark keeps a goroutine on every idle plain-http keep-alive connection
	// instead of parking it (dataplane.Options.NoHTTPPark).
	NoHTTPPark bool
	// MaxNodesPerConfig and MaxNodesPerConfigPremium bound the nodes of a config of
	// a common and a premium NodeBalancer (store defaults when zero).
	MaxNodesPerConfig, MaxNodesPerConfigPremium int
	// Store is StoreBolt (the default: the embedded file under DataDir) or
	// StoreEtcd (shared by several hosts).
	Store string
	// Etcd configures the etcd store.
	Etcd etcd.Options
	// HostID names this host among the hosts sharing an etcd store.
	HostID string
	// EtcdCompactEvery is how often this host compacts etcd's history, keeping one
	// period of it; zero leaves compaction to etcd's own settings.
	EtcdCompactEvery time.Duration
	// Version is this build's version, shown by GET /cluster.
	Version string
	// FrontendInterface, with the etcd store, makes the hosts elect one holder of the
	// frontend addresses, which adds them to this interface and announces them
	// (package ha); every host listens on them beforehand (IP_FREEBIND). Empty: the
	// addresses must already be local, as on a single host.
	FrontendInterface string
	// FrontendLease is the holder's lease (ha.DefaultTTL when zero).
	FrontendLease time.Duration
	// FrontendPeerPort is the UDP port of the hosts' heartbeats on
	// FrontendInterface, with which a holder rides out an etcd outage every host
	// sees (ha.Options.PeerPort); 0: none.
	FrontendPeerPort int
	// APITLSCert and APITLSKey, when set, serve the API (and the console, /healthz
	// and /metrics on its address) over TLS; SIGHUP reads them again.
	APITLSCert, APITLSKey string
	// HostAddrsEvery is how often this host's addresses are re-read besides the
	// kernel's change notices (HostAddrsEvery when zero).
	HostAddrsEvery time.Duration
}

// The stores Config.Store names.
const (
	StoreBolt = "bolt"
	StoreEtcd = "etcd"
)

// ClusterPersistEvery is how often a host of an etcd cluster persists its stats, so
// that the other hosts' /stats and transfer include its traffic this recently.
const ClusterPersistEvery = 10 * time.Second

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

	// With the etcd store: the backend and this host's cluster membership.
	etcd   *etcd.Backend
	member *cluster.Member
	// mirror and checker are set by Run; the membership's callbacks read them.
	mirror  atomic.Pointer[store.Mirror]
	checker atomic.Pointer[health.Checker]
	plane   atomic.Pointer[dataplane.Plane]
	// holder takes part in the election of the frontend addresses' holder; nil
	// without Config.FrontendInterface.
	holder *ha.Holder
	// apiCert is the API's certificate when it speaks TLS; SIGHUP replaces it.
	apiCert atomic.Pointer[tls.Certificate]
	// startAddrs are this host's addresses as New read them.
	startAddrs []netip.Addr
}

// hostAddrsEvery is Config.HostAddrsEvery or its default.
func (s *Server) hostAddrsEvery() time.Duration {
	if s.cfg.HostAddrsEvery > 0 {
		return s.cfg.HostAddrsEvery
	}
	return HostAddrsEvery
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
	// The API's certificate first: the listener speaks TLS from its first accept.
	if err := s.loadAPICert(); err != nil {
		return nil, err
	}
	var err error
	s.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if s.apiCert.Load() != nil {
		s.ln = tls.NewListener(s.ln, &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.apiCert.Load(), nil }})
	}
	if err := s.openExtras(); err != nil {
		s.ln.Close()
		return nil, err
	}
	// The store refuses nodes that point at these listeners, so it opens after them.
	b, err := s.openStore()
	if err == nil {
		s.db = store.New(b, store.Options{FrontendPool: cfg.FrontendPool, Own: s.listening(),
			MaxNodesPerConfig: cfg.MaxNodesPerConfig, MaxNodesPerConfigPremium: cfg.MaxNodesPerConfigPremium})
		if err = s.bootstrap(); err == nil {
			err = s.openHolder() // needs the etcd store
		}
		if err != nil {
			s.leave()
			s.db.Close()
		}
	}
	if err != nil {
		s.closeListeners()
		return nil, err
	}
	if n, err := s.db.AssignIPv6(); err != nil {
		s.leave()
		s.db.Close()
		s.closeListeners()
		return nil, fmt.Errorf("give NodeBalancers an ipv6: %w", err)
	} else if n > 0 {
		cfg.Log.Info("gave existing NodeBalancers an ipv6 from the frontend pool", "count", n)
	}
	if s.member != nil {
		s.member.SetAPI(s.ln.Addr().String())
	}
	return s, nil
}

// openStore opens the store Config.Store names; with etcd it also claims this
// host's id in the cluster, so that a duplicate id fails the start.
func (s *Server) openStore() (store.Backend, error) {
	switch s.cfg.Store {
	case "", StoreBolt:
		return bolt.Open(s.cfg.DataDir)
	case StoreEtcd:
	default:
		return nil, fmt.Errorf("store %q: must be %s or %s", s.cfg.Store, StoreBolt, StoreEtcd)
	}
	eo := s.cfg.Etcd
	eo.Log = s.cfg.Log
	b, err := etcd.Open(eo)
	if err != nil {
		return nil, err
	}
	m, err := cluster.Join(context.Background(), cluster.Options{
		Client: b.Client(), Prefix: b.Prefix(), HostID: s.cfg.HostID, Version: s.cfg.Version,
		API: s.cfg.Listen, Log: s.cfg.Log, Applied: s.applied, Views: s.views,
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	s.etcd, s.member = b, m
	s.cfg.Log.Info("joined the cluster", "host_id", s.cfg.HostID, "etcd", strings.Join(eo.Endpoints, ","),
		"prefix", b.Prefix())
	return b, nil
}

// leave gives up this host's cluster id at once (a start that failed after Join).
func (s *Server) leave() {
	if s.member != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.member.Run(ctx) // with ctx done: revokes the lease and returns
	}
}

// applied is the store revision the data plane's mirror reflects.
func (s *Server) applied() uint64 {
	if m := s.mirror.Load(); m != nil {
		return m.Revision()
	}
	return 0
}

// views is this host's status of every node of the state it serves.
func (s *Server) views() map[int]model.NodeStatus {
	m, c := s.mirror.Load(), s.checker.Load()
	if m == nil || c == nil {
		return nil
	}
	out := map[int]model.NodeStatus{}
	for _, v := range m.View() {
		for _, cs := range v.Configs {
			for _, n := range cs.Nodes {
				out[n.ID] = c.Status(n.ID)
			}
		}
	}
	return out
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
// addresses, which wildcard listeners answer on (Run follows their changes:
// followHostAddrs).
func (s *Server) listening() model.Listening {
	var l model.Listening
	for _, ln := range []net.Listener{s.ln, s.metricsLn} {
		if a, ok := ln.(*net.TCPListener); ok {
			l.Addrs = append(l.Addrs, a.Addr().(*net.TCPAddr).AddrPort())
		}
	}
	addrs, err := hostAddrs()
	if err != nil {
		s.cfg.Log.Warn("cannot list this host's addresses: nodes are checked against loopback only until they can be", "err", err)
	}
	l.Local = addrs
	s.startAddrs = addrs
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

// statusSource answers the API's node status questions: this host's health checker,
// or, in a cluster, the status the live hosts' views combine to (cluster.Member.Status).
type statusSource struct {
	c *health.Checker
	m *cluster.Member
}

func (s statusSource) NodeStatus(_, nodeID int) model.NodeStatus {
	own := s.c.Status(nodeID)
	if s.m == nil {
		return own
	}
	return s.m.Status(nodeID, own)
}

// cookieKey returns the key for sticky-cookie values, made on first start and kept
// in the store so cookies stay valid across restarts, and, on a shared store, across
// hosts: a cookie set through one host pins the client on any other.
func cookieKey(db *store.DB) ([]byte, error) {
	return db.EnsureBlob("cookie-key", func(k []byte) bool { return len(k) == 32 }, func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
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
	if reason := s.storeProblem(); reason != "" {
		http.Error(w, "degraded: "+reason+"\n", http.StatusServiceUnavailable)
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
	s.mirror.Store(mirror)
	so := s.cfg.Stats
	so.DB, so.Registry, so.Log, so.Mirror = s.db, counters, s.cfg.Log, mirror
	if s.member != nil {
		so.HostID = s.cfg.HostID
		if so.PersistEvery == 0 {
			so.PersistEvery = ClusterPersistEvery
		}
	}
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
	s.checker.Store(checker)
	drops := firewall.NewDrops()
	st.SetFirewallDrops(drops)
	popts := dataplane.Options{
		Log:           s.cfg.Log,
		MaxConns:      s.cfg.MaxConns,
		BackendSource: s.cfg.BackendSource,
		Grace:         s.cfg.ShutdownGrace,
		Timeouts:      dataplane.Timeouts{TCPIdle: s.cfg.TCPIdleTimeout},
		TCPEngine:     s.cfg.TCPEngine,
		TCPOwnWait:    s.cfg.TCPOwnWait,
		TCPBusyPoll:   s.cfg.TCPBusyPoll,
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
	popts.FreeBind = s.holder != nil
	popts.NoHTTPPark = s.cfg.NoHTTPPark
	plane = dataplane.New(popts)
	s.plane.Store(plane)

	policy := model.Policy{Region: s.cfg.Region, BackendRanges: s.cfg.BackendRanges}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { s.healthz(w, plane) })
	apiHandler := api.New(api.Options{DB: s.db, Policy: policy, Log: s.cfg.Log, Status: statusSource{checker, s.member},
		Stats: st, Transfer: st, Listeners: plane, Committed: plane.CatchUp})
	mux.Handle("GET /cluster", apiHandler.RequireRead(http.HandlerFunc(s.serveCluster)))
	mux.Handle("/v4/", apiHandler)
	mux.Handle("/v4beta/", apiHandler)
	mux.Handle("/", web.Handler())
	metrics := st.MetricsHandler()
	if s.holder != nil {
		metrics = s.withHoldingMetric(metrics)
	}
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
	// The listeners close only after this host gave the frontend addresses up, so
	// that while it holds them it also serves them (a stop hands them over first).
	planeCtx, stopPlane := context.WithCancel(context.Background())
	defer stopPlane()
	g.Go(func() error { return plane.Run(planeCtx, s.db) })
	if s.holder != nil {
		g.Go(func() error {
			err := s.holder.Run(gctx)
			stopPlane()
			return err
		})
	} else {
		g.Go(func() error { <-gctx.Done(); stopPlane(); return nil })
	}
	// SIGHUP reloads the API certificate; without one it is only logged (a reload
	// through systemd must never stop a server).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // registered before Run reports ready
	defer signal.Stop(hup)
	g.Go(func() error { s.reloadOnHUP(gctx, hup); return nil })
	if s.cfg.AdaptProcs {
		g.Go(func() error { return procs.Run(gctx, procs.DefaultPolicy(runtime.GOMAXPROCS(0)), s.cfg.Log) })
	}
	g.Go(func() error {
		s.followHostAddrs(gctx, s.startAddrs, s.hostAddrsEvery(), hostAddrs, addrChanges(gctx, s.cfg.Log))
		return nil
	})
	if s.member != nil {
		g.Go(func() error { return s.member.Run(gctx) })
		g.Go(func() error { s.probeStore(gctx); return nil })
		// A token created or revoked through another host counts here at once.
		g.Go(func() error { s.etcd.Changed(gctx, store.KindToken, apiHandler.TokensChanged); return nil })
	}
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
	scheme := "http://"
	if s.apiCert.Load() != nil {
		scheme = "https://"
	}
	s.cfg.Log.Info("nodebalancer ready", "api", scheme+s.ln.Addr().String())
	g.Go(func() error {
		<-gctx.Done()
		s.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	err = g.Wait()
	if s.holder != nil {
		// The data plane closed (its connections done or their grace over): a
		// handover's forwarding and drained addresses can go.
		s.holder.EndDrain()
	}
	stopChecks()
	stopStats()
	return errors.Join(err, <-checkDone, <-statsDone, <-accessDone)
}
