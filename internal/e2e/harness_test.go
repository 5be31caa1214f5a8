package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/server"
)

// testNet numbers the tests that start a server, giving each its own loopback /24s.
var testNet atomic.Int32

const bootstrapToken = "e2e-bootstrap-token-0123456789"

// env is one running nodebalancer and the loopback networks of one test.
type env struct {
	t   *testing.T
	ctx context.Context
	lc  *linodego.Client
	n   byte   // the test's network number (third octet)
	api string // the API's base URL, for clients other than linodego
}

// newEnv starts a nodebalancer for t, stopped when t ends. The test runs in parallel
// with the package's other tests. mods may change the server's configuration.
func newEnv(t *testing.T, mods ...func(*server.Config)) *env {
	t.Helper()
	return newEnvWith(t, func(c *server.Config) {
		for _, m := range mods {
			m(c)
		}
	})
}

// newEnvWith is newEnv with a hook that may adjust the server's configuration.
func newEnvWith(t *testing.T, adjust func(*server.Config)) *env {
	t.Helper()
	t.Parallel()
	n := testNet.Add(1)
	if n > 250 {
		t.Fatal("out of test networks")
	}
	e := &env{t: t, ctx: context.Background(), n: byte(n)}
	logw := io.Discard
	if os.Getenv("E2E_LOG") != "" {
		logw = os.Stderr
	}
	cfg := server.Config{
		Listen:         "127.0.0.1:0",
		DataDir:        t.TempDir(),
		FrontendPool:   []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 61, e.n, 0}), 24)},
		BackendRanges:  model.DefaultBackendRanges(),
		Region:         "local",
		BootstrapToken: bootstrapToken,
		ShutdownGrace:  2 * time.Second,
		Log:            slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server stopped with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	base := "http://" + s.Addr().String()
	e.api = base
	waitFor(t, 5*time.Second, "the server to be ready", func() bool {
		r, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	lc := linodego.NewClient(&http.Client{Timeout: 10 * time.Second})
	lc.SetBaseURL(base)
	lc.SetAPIVersion("v4")
	lc.SetToken(bootstrapToken)
	lc.SetRetryCount(0)
	e.lc = &lc
	return e
}

// backendIP is the loopback address of backend host (1..254) of this test.
func (e *env) backendIP(host byte) netip.Addr { return netip.AddrFrom4([4]byte{127, 62, e.n, host}) }

// clientIP is the loopback address of client host (1..254) of this test.
func (e *env) clientIP(host byte) netip.Addr { return netip.AddrFrom4([4]byte{127, 63, e.n, host}) }

// waitFor polls cond every 10 ms until it holds, failing t after within.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func ptr[T any](v T) *T { return &v }

// ---- backends -------------------------------------------------------------

// httpBackend is an HTTP server that answers every path with its name, and /health
// with 200 (or 500 once made sick, or nothing once made to hang) and a body tests may
// change. It counts both.
type httpBackend struct {
	name       string
	addr       netip.AddrPort
	sick       atomic.Bool // /health answers 500
	hang       atomic.Bool // /health does not answer
	healthBody atomic.Pointer[string]
	hits       atomic.Int64 // requests other than /health
	healthHits atomic.Int64
	srv        *http.Server
}

// httpBackend starts an HTTP backend called name on backend host host.
func (e *env) httpBackend(name string, host byte) *httpBackend {
	e.t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(e.backendIP(host), 0).String())
	if err != nil {
		e.t.Fatal(err)
	}
	b := &httpBackend{name: name, addr: netip.MustParseAddrPort(ln.Addr().String())}
	ok := "ok-" + name
	b.healthBody.Store(&ok)
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(ln)
	e.t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		b.healthHits.Add(1)
		if b.hang.Load() { // longer than any check_timeout the tests use
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		if b.sick.Load() {
			w.WriteHeader(500)
		}
		io.WriteString(w, *b.healthBody.Load())
		return
	}
	b.hits.Add(1)
	w.Header().Set("X-Backend", b.name)
	if r.URL.Path == "/slow" { // twenty lines over about two seconds, each sent at once
		for i := range 20 {
			fmt.Fprintf(w, "%s %d\n", b.name, i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
		return
	}
	io.WriteString(w, b.name)
}

// tcpBackend is a raw TCP server. A client session sends one line and gets the
// backend's name back, then every further line is echoed prefixed with the name. A
// connection that starts with an HTTP request line is a health check: it gets 200 (or
// 500 once sick); one that sends nothing is a connection check. Both count as health
// hits.
type tcpBackend struct {
	name       string
	addr       netip.AddrPort
	sick       atomic.Bool
	sessions   atomic.Int64 // client sessions
	healthHits atomic.Int64

	mu sync.Mutex
	ln net.Listener
	wg sync.WaitGroup
}

// tcpBackend starts a TCP backend called name on backend host host.
func (e *env) tcpBackend(name string, host byte) *tcpBackend {
	e.t.Helper()
	b := &tcpBackend{name: name, addr: netip.AddrPortFrom(e.backendIP(host), 0)}
	if err := b.start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { b.stop(); b.wg.Wait() })
	return b
}

// start listens on b.addr (a fixed port once the first start picked one).
func (b *tcpBackend) start() error {
	ln, err := net.Listen("tcp", b.addr.String())
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.ln = ln
	b.addr = netip.MustParseAddrPort(ln.Addr().String())
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				b.serve(c)
			}()
		}
	}()
	return nil
}

// stop closes the listener; sessions already open go on.
func (b *tcpBackend) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
}

func (b *tcpBackend) serve(c net.Conn) {
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if line == "" && err != nil {
		b.healthHits.Add(1) // a connection check: connect and close
		return
	}
	if strings.HasPrefix(line, "GET ") || strings.HasPrefix(line, "HEAD ") {
		b.healthHits.Add(1)
		for {
			h, err := r.ReadString('\n')
			if err != nil || h == "\r\n" || h == "\n" {
				break
			}
		}
		code := 200
		if b.sick.Load() {
			code = 500
		}
		fmt.Fprintf(c, "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", code)
		return
	}
	b.sessions.Add(1)
	if _, err := io.WriteString(c, b.name+"\n"); err != nil {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, b.name+":"+line); err != nil {
			return
		}
	}
}

// ---- the API --------------------------------------------------------------

// nodeSpec is one node a balancer is created with.
type nodeSpec struct {
	name   string
	addr   netip.AddrPort
	weight int
	mode   linodego.NodeMode
}

// lb is one NodeBalancer with one config, as the API created it.
type lb struct {
	e     *env
	nbID  int
	cfgID int
	front netip.AddrPort
	ids   map[string]int // node name → node ID
	proto linodego.ConfigProtocol
}

// balancer creates a NodeBalancer with one config (port 8080 unless opts says) and
// the given nodes.
func (e *env) balancer(opts linodego.NodeBalancerConfigCreateOptions, nodes ...nodeSpec) *lb {
	e.t.Helper()
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil {
		e.t.Fatal(err)
	}
	if opts.Port == 0 {
		opts.Port = 8080
	}
	cfg, err := e.lc.CreateNodeBalancerConfig(e.ctx, nb.ID, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	l := &lb{e: e, nbID: nb.ID, cfgID: cfg.ID, ids: map[string]int{}, proto: cfg.Protocol,
		front: netip.AddrPortFrom(netip.MustParseAddr(*nb.IPv4), uint16(cfg.Port))}
	// The data plane opens the listener once it sees the config; wait for it before
	// adding nodes, so that this connection reaches none. A tcp config connects to a
	// node as it accepts, and on a loaded machine the accept can come after the nodes
	// are added: the probe waits until the balancer has closed it (no node yet), or
	// a node would see a connection that sends nothing (what a connection check does).
	waitFor(e.t, modeChangeBound, "the listener of "+l.front.String(), func() bool {
		c, err := net.DialTimeout("tcp", l.front.String(), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		if cfg.Protocol == linodego.ProtocolTCP {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || !isClosed(err) {
				e.t.Fatalf("the listener of %s with no nodes: read %v, want it closed", l.front, err)
			}
		}
		return true
	})
	for _, n := range nodes {
		l.addNode(n)
	}
	return l
}

// addNode adds a node to the balancer's config.
func (l *lb) addNode(n nodeSpec) {
	l.e.t.Helper()
	if n.weight == 0 {
		n.weight = 50
	}
	got, err := l.e.lc.CreateNodeBalancerNode(l.e.ctx, l.nbID, l.cfgID, linodego.NodeBalancerNodeCreateOptions{
		Address: n.addr.String(), Label: "node-" + n.name, Weight: n.weight, Mode: n.mode,
	})
	if err != nil {
		l.e.t.Fatal(err)
	}
	l.ids[n.name] = got.ID
}

// setMode changes a node's mode through the API and returns when the call has.
func (l *lb) setMode(name string, mode linodego.NodeMode) {
	l.e.t.Helper()
	n, err := l.e.lc.UpdateNodeBalancerNode(l.e.ctx, l.nbID, l.cfgID, l.ids[name], linodego.NodeBalancerNodeUpdateOptions{Mode: mode})
	if err != nil {
		l.e.t.Fatal(err)
	}
	if n.Mode != mode {
		l.e.t.Fatalf("node %s: mode %q after setting %q", name, n.Mode, mode)
	}
}

// status is a node's status as the API shows it.
func (l *lb) status(name string) string {
	l.e.t.Helper()
	n, err := l.e.lc.GetNodeBalancerNode(l.e.ctx, l.nbID, l.cfgID, l.ids[name])
	if err != nil {
		l.e.t.Fatal(err)
	}
	return string(n.Status)
}

// waitStatus waits until the API shows node name with status want and returns how long
// that took.
func (l *lb) waitStatus(name, want string, within time.Duration) time.Duration {
	l.e.t.Helper()
	return waitFor(l.e.t, within, "node "+name+" to be "+want, func() bool { return l.status(name) == want })
}

// nodesStatus is the config's nodes_status as the API shows it.
func (l *lb) nodesStatus() (up, down int) {
	l.e.t.Helper()
	c, err := l.e.lc.GetNodeBalancerConfig(l.e.ctx, l.nbID, l.cfgID)
	if err != nil {
		l.e.t.Fatal(err)
	}
	if c.NodesStatus == nil {
		l.e.t.Fatal("config has no nodes_status")
	}
	return c.NodesStatus.Up, c.NodesStatus.Down
}

// url is the balancer's http or https URL for path.
func (l *lb) url(path string) string {
	if l.proto == linodego.ProtocolHTTPS {
		return "https://" + l.front.String() + path
	}
	return "http://" + l.front.String() + path
}

// ---- clients --------------------------------------------------------------

// httpClient returns an HTTP client whose connections come from client host src (0 for
// any loopback address); keepAlive false opens a new connection per request.
func (e *env) httpClient(src byte, keepAlive bool) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if src != 0 {
		d.LocalAddr = &net.TCPAddr{IP: e.clientIP(src).AsSlice()}
	}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// reply is what one request through the balancer got.
type reply struct {
	status    int
	proto     int    // HTTP major version between client and balancer
	node      string // the backend's name, from X-Backend
	setCookie string // the NB_SRVID value set, if any
}

// get sends GET url with the NB_SRVID cookie when cookie is not empty.
func get(c *http.Client, url, cookie string) (reply, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return reply{}, err
	}
	if cookie != "" {
		req.Header.Set("Cookie", "NB_SRVID="+cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, proto: resp.ProtoMajor, node: resp.Header.Get("X-Backend")}
	if r.status == 200 && r.node != string(body) {
		return r, fmt.Errorf("X-Backend %q but body %q", r.node, body)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "NB_SRVID" {
			r.setCookie = ck.Value
		}
	}
	return r, nil
}

// mustGet is get that fails t unless the answer is a 200 from a backend.
func mustGet(t testing.TB, c *http.Client, url, cookie string) reply {
	t.Helper()
	r, err := get(c, url, cookie)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 200 || r.node == "" {
		t.Fatalf("GET %s: status %d from %q", url, r.status, r.node)
	}
	return r
}

// count sends n requests and returns how many each backend answered.
func count(t testing.TB, c *http.Client, url, cookie string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[mustGet(t, c, url, cookie).node]++
	}
	return got
}

// tcpSession is one client connection through a tcp config.
type tcpSession struct {
	c    net.Conn
	r    *bufio.Reader
	node string
}

// dialTCP opens a session to front from client host src (0 for any address) and
// returns it once the backend has said its name.
func (e *env) dialTCP(front netip.AddrPort, src byte) (*tcpSession, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	if src != 0 {
		d.LocalAddr = &net.TCPAddr{IP: e.clientIP(src).AsSlice()}
	}
	c, err := d.Dial("tcp", front.String())
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	s := &tcpSession{c: c, r: bufio.NewReader(c)}
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		c.Close()
		return nil, err
	}
	name, err := s.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the backend's name: %w", err)
	}
	s.node = strings.TrimSuffix(name, "\n")
	return s, nil
}

// echo sends one line on the session and checks that the same backend echoes it.
func (s *tcpSession) echo(line string) error {
	s.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(s.c, line+"\n"); err != nil {
		return err
	}
	got, err := s.r.ReadString('\n')
	if err != nil {
		return err
	}
	if want := s.node + ":" + line + "\n"; got != want {
		return fmt.Errorf("echo %q, want %q", got, want)
	}
	return nil
}

func (s *tcpSession) Close() error { return s.c.Close() }

// tcpNode opens one session, returns the backend that took it and closes it.
func (e *env) tcpNode(front netip.AddrPort, src byte) (string, error) {
	s, err := e.dialTCP(front, src)
	if err != nil {
		return "", err
	}
	s.Close()
	return s.node, nil
}

// mustTCPCount opens n sessions from client host src and returns how many each
// backend took.
func (e *env) mustTCPCount(front netip.AddrPort, src byte, n int) map[string]int {
	e.t.Helper()
	got := map[string]int{}
	for range n {
		node, err := e.tcpNode(front, src)
		if err != nil {
			e.t.Fatal(err)
		}
		got[node]++
	}
	return got
}

// ---- background traffic ---------------------------------------------------

// sample is one request or session of background traffic.
type sample struct {
	start, end time.Time
	node       string
	err        error // a transport error or a status other than 200
}

// traffic keeps sending requests until stopped, recording each.
type traffic struct {
	stop    chan struct{}
	done    chan struct{}
	samples []sample
}

// background sends one request (or session) after another with send until the returned
// traffic is stopped.
func background(send func() (string, error)) *traffic {
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for {
			select {
			case <-tr.stop:
				return
			default:
			}
			s := sample{start: time.Now()}
			s.node, s.err = send()
			s.end = time.Now()
			tr.samples = append(tr.samples, s)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return tr
}

// finish stops the traffic and returns its samples.
func (tr *traffic) finish() []sample {
	close(tr.stop)
	<-tr.done
	return tr.samples
}

// httpSender is a background sender of GET url through c.
func httpSender(c *http.Client, url string) func() (string, error) {
	return func() (string, error) {
		r, err := get(c, url, "")
		if err == nil && r.status != 200 {
			err = fmt.Errorf("status %d", r.status)
		}
		return r.node, err
	}
}

// failures returns the samples that failed.
func failures(ss []sample) []sample {
	return slices.DeleteFunc(slices.Clone(ss), func(s sample) bool { return s.err == nil })
}

// reached counts the samples node answered that started after after.
func reached(ss []sample, node string, after time.Time) int {
	n := 0
	for _, s := range ss {
		if s.node == node && s.start.After(after) {
			n++
		}
	}
	return n
}

// isClosed reports whether err says the peer closed or reset the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset by peer")
}

// backend starts an http or a tcp backend, as proto needs, and returns its address.
func (e *env) backend(proto linodego.ConfigProtocol, name string, host byte) netip.AddrPort {
	e.t.Helper()
	if proto == linodego.ProtocolTCP {
		return e.tcpBackend(name, host).addr
	}
	return e.httpBackend(name, host).addr
}

// modeChangeBound is how soon a mode change must reach new connections (DESIGN.md;
// Linode promises 60 s). TestModeChangeLatency measures the actual figure.
const modeChangeBound = time.Second

// applied waits out modeChangeBound after an API change, so that what follows tests
// the new state and not the propagation.
func applied() { time.Sleep(modeChangeBound) }

// settle sends requests through c until one is answered by want, failing t if that
// takes longer than modeChangeBound; it returns how long it took.
func settle(t testing.TB, c *http.Client, url, cookie, want string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r, err := get(c, url, cookie)
		if err == nil && r.node == want {
			return time.Since(start)
		}
		if time.Since(start) > modeChangeBound {
			t.Fatalf("%v after the change, requests still do not reach %s (last: %+v, %v)", modeChangeBound, want, r, err)
		}
	}
}

// tlsName is the server name of the certificate https configs serve.
const tlsName = "nodebalancer.e2e.test"

// httpsClient returns a client of https configs serving a testcert certificate for tlsName:
// HTTP/2 when h2, else HTTP/1.1 only. It verifies the certificate against roots.
func (e *env) httpsClient(roots *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: tlsName},
		DialContext:     (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}
	if h2 {
		tr.ForceAttemptHTTP2 = true
	} else {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}
