package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/proxyproto"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// env is a running data plane over a real store, with its frontend pool in a /24 of
// loopback that no other test of this package uses.
type env struct {
	t     *testing.T
	db    *store.DB
	plane *Plane
}

// newEnv starts a data plane; opts, if any, change its Options first.
func newEnv(t *testing.T, pool string, opts ...func(*Options)) *env {
	t.Helper()
	db := teststore.New(t, pool) // closed after the plane stops: cleanups run last-in first-out
	return envOver(t, db, opts...)
}

// envOver starts a data plane following db; opts, if any, change its Options first.
func envOver(t *testing.T, db *store.DB, opts ...func(*Options)) *env {
	t.Helper()
	o := Options{Grace: 2 * time.Second, CookieKey: []byte("test-key"), Log: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(&o)
	}
	p := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, db) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &env{t: t, db: db, plane: p}
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) create(cfgs ...model.ConfigWithNodes) model.NodeBalancer {
	e.t.Helper()
	nb, err := e.db.CreateNodeBalancer(model.NodeBalancer{Region: "local"}, cfgs)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cfgs {
		addr := nb.IPv4 + ":" + fmt.Sprint(c.Port)
		waitFor(e.t, time.Second, "listener on "+addr, func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return nb
}

// settle waits until config id's readiness probe has been accepted and has ended: a
// dial completes from the kernel's backlog before the listener accepts it. Served or
// refused (under a MaxConns that another config's probe filled), it has ended.
func (e *env) settle(id int) {
	e.t.Helper()
	cs := e.plane.opts.Stats.Config(id)
	waitFor(e.t, 2*time.Second, "the readiness probe to end", func() bool {
		return cs.Connections.Load()+cs.Refused.Load() >= 1 && e.plane.active.Load() == 0
	})
}

func config(proto model.Protocol, port int, nodes ...model.Node) model.ConfigWithNodes {
	c := model.NewConfig()
	c.Protocol, c.Port = proto, port
	return model.ConfigWithNodes{Config: c, Nodes: nodes}
}

func node(label, addr string, weight int) model.Node {
	n := model.NewNode()
	n.Label, n.Address, n.Weight = label, addr, weight
	return n
}

// nameServer is an HTTP backend answering every request with its name.
func nameServer(t *testing.T, addr, name string) *atomic.Int64 {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("X-Seen-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &hits
}

func get(t *testing.T, c *http.Client, url string) (string, *http.Response) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp
}

func TestHTTPWeightedDistribution(t *testing.T) {
	e := newEnv(t, "127.0.20.0/24")
	nameServer(t, "127.0.21.1:0", "x") // keeps the shape of the other tests: one unused
	nameServer(t, "127.0.21.2:9001", "a")
	nameServer(t, "127.0.21.3:9001", "b")
	nb := e.create(config(model.ProtocolHTTP, 80, node("aa1", "127.0.21.2:9001", 1), node("bb1", "127.0.21.3:9001", 3)))
	c := &http.Client{}
	counts := map[string]int{}
	const n = 4000
	for i := 0; i < n; i++ {
		body, resp := get(t, c, "http://"+nb.IPv4+":80/")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		counts[body]++
	}
	share := float64(counts["b"]) / n * 100
	if share < 70 || share > 80 {
		t.Fatalf("weight 3 of 4 got %.1f%% of %d requests (%v), want 75±5", share, n, counts)
	}
	_, resp := get(t, c, "http://"+nb.IPv4+":80/")
	if got := resp.Header.Get("X-Seen-For"); got != "127.0.0.1" {
		t.Fatalf("backend saw X-Forwarded-For %q", got)
	}
	if got := resp.Header.Get("X-Seen-Proto"); got != "http" {
		t.Fatalf("backend saw X-Forwarded-Proto %q", got)
	}
}

// echoServer is a raw TCP backend that echoes until the client half-closes, then
// writes a trailer and closes: it proves both directions and half-close.
func echoServer(t *testing.T, addr string, proxyHeaders chan<- proxyproto.Header) {
	t.Helper()
	testnet.ServeConns(t, addr, func(c net.Conn) {
		r := bufio.NewReader(c)
		if proxyHeaders != nil {
			h, err := proxyproto.Read(r)
			if err != nil {
				return
			}
			proxyHeaders <- h
		}
		n, _ := io.Copy(c, r)
		fmt.Fprintf(c, "|echoed %d", n)
		c.(*net.TCPConn).CloseWrite()
	})
}

func TestTCPByteExactWithHalfClose(t *testing.T) {
	e := newEnv(t, "127.0.22.0/24")
	echoServer(t, "127.0.23.2:9002", nil)
	nb := e.create(config(model.ProtocolTCP, 9000, node("echo", "127.0.23.2:9002", 50)))
	e.settle(1)
	cs := e.plane.opts.Stats.Config(1)
	in0, out0 := cs.BytesIn.Load(), cs.BytesOut.Load()
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 8<<20+123) // more than one splice chunk
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, payload...), fmt.Sprintf("|echoed %d", len(payload))...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want %d (byte-exact echo and the trailer written after our half-close)", len(got), len(want))
	}
	waitFor(t, time.Second, "byte counters", func() bool {
		return cs.BytesIn.Load()-in0 == uint64(len(payload)) && cs.BytesOut.Load()-out0 == uint64(len(want))
	})
}

func TestProxyProtocolHeaders(t *testing.T) {
	for _, v := range []model.ProxyProtocol{model.ProxyProtocolV1, model.ProxyProtocolV2} {
		t.Run(string(v), func(t *testing.T) {
			pool, backend := "127.0.24.0/24", "127.0.25.2:9003"
			if v == model.ProxyProtocolV2 {
				pool, backend = "127.0.26.0/24", "127.0.27.2:9003"
			}
			e := newEnv(t, pool)
			hdrs := make(chan proxyproto.Header, 16)
			echoServer(t, backend, hdrs)
			cfg := config(model.ProtocolTCP, 9000, node("echo", backend, 50))
			cfg.ProxyProtocol = v
			nb := e.create(cfg)
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 99, 7)}}
			c, err := d.Dial("tcp", nb.IPv4+":9000")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "hi")
			c.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(c)
			if string(got) != "hi|echoed 2" {
				t.Fatalf("payload after the PROXY header: %q", got)
			}
			local := netip.MustParseAddrPort(c.LocalAddr().String())
			var h proxyproto.Header
			for h = range hdrs { // skip the header of create's readiness probe
				if h.Source == local {
					break
				}
			}
			want := netip.MustParseAddrPort(nb.IPv4 + ":9000")
			wantVersion := map[model.ProxyProtocol]int{model.ProxyProtocolV1: 1, model.ProxyProtocolV2: 2}[v]
			if h.Version != wantVersion || h.Source != local || h.Dst != want {
				t.Fatalf("backend got %+v, want v%d from %v to %v", h, wantVersion, local, want)
			}
		})
	}
}

func TestHTTPSTerminationHTTP1AndHTTP2(t *testing.T) {
	e := newEnv(t, "127.0.28.0/24")
	nameServer(t, "127.0.29.2:9004", "tls-backend")
	cert := testcert.New(t, "nb.test")
	roots := cert.Pool
	cfg := config(model.ProtocolHTTPS, 443, node("web", "127.0.29.2:9004", 50))
	cfg.SSLCert, cfg.SSLKey = cert.CertPEM, cert.KeyPEM
	nb := e.create(cfg)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "nb.test"}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr}
		body, resp := get(t, c, "https://"+nb.IPv4+":443/")
		wantProto := map[bool]int{false: 1, true: 2}[h2]
		if body != "tls-backend" || resp.ProtoMajor != wantProto {
			t.Fatalf("h2=%v: body %q proto %s", h2, body, resp.Proto)
		}
		if got := resp.Header.Get("X-Seen-Proto"); got != "https" {
			t.Fatalf("h2=%v: backend saw X-Forwarded-Proto %q", h2, got)
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("h2=%v: TLS state %+v", h2, resp.TLS)
		}
		tr.CloseIdleConnections()
	}
	// recommended refuses TLS 1.1; legacy would accept it.
	_, err := tls.Dial("tcp", nb.IPv4+":443", &tls.Config{RootCAs: roots, ServerName: "nb.test", MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("cipher_suite recommended accepted a TLS 1.1 client")
	}
}

func TestWebSocketUpgradeThroughHTTPConfig(t *testing.T) {
	e := newEnv(t, "127.0.30.0/24")
	testnet.UpgradeEcho(t, "127.0.31.2:9005")
	nb := e.create(config(model.ProtocolHTTP, 80, node("ws1", "127.0.31.2:9005", 50)))
	c, err := net.Dial("tcp", nb.IPv4+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade answered %v %v", resp, err)
	}
	for _, msg := range []string{"ping-1", "ping-2"} {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: %q %v", msg, buf, err)
		}
	}
}

func TestChangesApplyLiveWithoutFailedRequests(t *testing.T) {
	e := newEnv(t, "127.0.32.0/24")
	nameServer(t, "127.0.33.2:9006", "a")
	nameServer(t, "127.0.33.3:9006", "b")
	nb := e.create(config(model.ProtocolHTTP, 80, node("aa1", "127.0.33.2:9006", 50)))
	cfgs, _ := e.db.Configs(nb.ID)
	cfgID := cfgs[0].ID
	url := "http://" + nb.IPv4 + ":80/"

	// Load in the background the whole time; every request must succeed.
	var failures, total atomic.Int64
	var last atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				total.Add(1)
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
					last.Store(fmt.Sprint(err, resp))
					if resp != nil {
						resp.Body.Close()
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	seen := func(want string) func() bool {
		c := &http.Client{}
		return func() bool { b, _ := get(t, c, url); return b == want }
	}

	start := time.Now()
	added, err := e.db.CreateNode(nb.ID, cfgID, node("bb1", "127.0.33.3:9006", 50))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the added node to take traffic", seen("b"))
	t.Logf("node add live after %v", time.Since(start))

	// Re-weight a to 1 and b to 255: b takes nearly everything.
	e.db.UpdateNode(nb.ID, cfgID, added.ID, func(n *model.Node) error { n.Weight = 255; return nil })
	time.Sleep(100 * time.Millisecond)
	c := &http.Client{}
	bs := 0
	for i := 0; i < 200; i++ {
		if b, _ := get(t, c, url); b == "b" {
			bs++
		}
	}
	if bs < 140 {
		t.Fatalf("after re-weighting 50:255, b served %d of 200", bs)
	}

	nodes, _ := e.db.Nodes(nb.ID, cfgID)
	start = time.Now()
	if err := e.db.DeleteNode(nb.ID, cfgID, nodes[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the removed node to stop taking traffic", func() bool {
		for i := 0; i < 20; i++ {
			if !seen("b")() {
				return false
			}
		}
		return true
	})
	t.Logf("node removal live after %v", time.Since(start))
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d requests failed during live changes; last: %v", failures.Load(), total.Load(), last.Load())
	}
	t.Logf("%d requests during the changes, none failed", total.Load())
}

func TestDeletingAConfigFreesItsPortAndMovingAPortMovesTheListener(t *testing.T) {
	e := newEnv(t, "127.0.34.0/24")
	nameServer(t, "127.0.35.2:9007", "a")
	nb := e.create(config(model.ProtocolHTTP, 80, node("aa1", "127.0.35.2:9007", 50)))
	cfgs, _ := e.db.Configs(nb.ID)
	if _, err := e.db.UpdateConfig(nb.ID, cfgs[0].ID, func(c *model.Config) error { c.Port = 81; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the listener to move to :81", func() bool {
		c, err := net.Dial("tcp", nb.IPv4+":81")
		if err != nil {
			return false
		}
		c.Close()
		_, err = net.Dial("tcp", nb.IPv4+":80")
		return err != nil
	})
	if err := e.db.DeleteConfig(nb.ID, cfgs[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "port 81 to be free again", func() bool {
		ln, err := net.Listen("tcp", nb.IPv4+":81")
		if err != nil {
			return false
		}
		ln.Close()
		return true
	})
}

func TestClientConnThrottle(t *testing.T) {
	e := newEnv(t, "127.0.36.0/24")
	echoServer(t, "127.0.37.2:9008", nil)
	nb, err := e.db.CreateNodeBalancer(model.NodeBalancer{Region: "local", ClientConnThrottle: 3},
		[]model.ConfigWithNodes{config(model.ProtocolTCP, 9000, node("echo", "127.0.37.2:9008", 50))})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "listener", func() bool { return len(e.plane.Listening()) == 1 })
	try := func(src net.IP) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
		c, err := d.Dial("tcp", nb.IPv4+":9000")
		if err != nil {
			return false
		}
		defer c.Close()
		io.WriteString(c, "x")
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		return strings.HasPrefix(string(b), "x|echoed")
	}
	a := net.IPv4(127, 0, 98, 1)
	ok := 0
	for i := 0; i < 6; i++ {
		if try(a) {
			ok++
		}
	}
	if ok != 3 {
		t.Fatalf("throttle 3/s let %d of 6 quick connections through", ok)
	}
	if !try(net.IPv4(127, 0, 98, 2)) {
		t.Fatal("another client address must not be throttled")
	}
	time.Sleep(1100 * time.Millisecond)
	if !try(a) {
		t.Fatal("the client must be let in again after a second")
	}
}

func TestConnectionCap(t *testing.T) {
	e := newEnv(t, "127.0.38.0/24")
	e.plane.opts.MaxConns = 2
	echoServer(t, "127.0.39.2:9009", nil)
	nb := e.create(config(model.ProtocolTCP, 9000, node("echo", "127.0.39.2:9009", 50)))
	e.settle(1)
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", nb.IPv4+":9000")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, time.Second, "two active", func() bool { return e.plane.active.Load() == 2 })
	// The refusal is a reset right after accept: it may even beat the dial's return.
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("a connection over the cap must be closed at once, got %v", err)
		}
	}
	if got := e.plane.opts.Stats.Config(1).Refused.Load(); got != 1 {
		t.Fatalf("refused counter %d, want 1", got)
	}
	for _, h := range held {
		h.Close()
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestUnchangedConfigsKeepTheirSnapshot(t *testing.T) {
	e := newEnv(t, "127.0.40.0/24")
	nameServer(t, "127.0.41.2:9010", "a")
	nb := e.create(config(model.ProtocolHTTP, 80, node("aa1", "127.0.41.2:9010", 50)),
		config(model.ProtocolHTTP, 81, node("aa2", "127.0.41.2:9010", 50)))
	cfgs, _ := e.db.Configs(nb.ID)
	snap := func(id int) *snapshot {
		e.plane.mu.Lock()
		defer e.plane.mu.Unlock()
		return e.plane.listeners[id].snap.Load()
	}
	before0, before1 := snap(cfgs[0].ID), snap(cfgs[1].ID)
	if _, err := e.db.UpdateConfig(nb.ID, cfgs[0].ID, func(c *model.Config) error { c.Algorithm = model.AlgorithmLeastConn; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the changed config's new snapshot", func() bool { return snap(cfgs[0].ID) != before0 })
	if snap(cfgs[1].ID) != before1 {
		t.Fatal("a config that did not change got a new snapshot")
	}
}

func TestBusyPortIsReportedAndRetriedUntilItBinds(t *testing.T) {
	e := newEnv(t, "127.0.42.0/24")
	// The pool's first address goes to the first NodeBalancer: hold its port 80.
	squatter, err := net.Listen("tcp", "127.0.42.1:80")
	if err != nil {
		t.Fatal(err)
	}
	nb, err := e.db.CreateNodeBalancer(model.NodeBalancer{Region: "local"},
		[]model.ConfigWithNodes{config(model.ProtocolTCP, 80, node("aa1", "127.0.43.2:9", 1))})
	if err != nil {
		squatter.Close()
		t.Fatal(err)
	}
	cfgs, _ := e.db.Configs(nb.ID)
	id := cfgs[0].ID
	waitFor(t, time.Second, "the failure to be recorded", func() bool { return len(e.plane.Failed()) == 1 })
	f := e.plane.Failed()[0]
	if f.ConfigID != id || f.NodeBalancerID != nb.ID || f.Addr.String() != "127.0.42.1:80" || !strings.Contains(f.Err.Error(), "address already in use") {
		t.Errorf("failure %+v", f)
	}
	if st := e.plane.ListenerStatus(id); st.State != model.ListenerFailed || st.Address != "127.0.42.1:80" || st.Error == "" || st.Since.IsZero() {
		t.Errorf("status while the port is busy: %+v", st)
	}
	// Retries happen on their own, without a store change.
	waitFor(t, 2*RetryMin+2*time.Second, "a second attempt", func() bool {
		fs := e.plane.Failed()
		return len(fs) == 1 && fs[0].Attempts >= 2
	})
	squatter.Close()
	took := time.Now()
	waitFor(t, RetryMax+2*time.Second, "the listener to open once the port is free", func() bool {
		return e.plane.ListenerStatus(id).State == model.ListenerOpen
	})
	t.Logf("bound %v after the port was freed", time.Since(took).Round(time.Millisecond))
	if fs := e.plane.Failed(); len(fs) != 0 {
		t.Errorf("still failed after binding: %+v", fs)
	}
	c, err := net.Dial("tcp", "127.0.42.1:80")
	if err != nil {
		t.Fatalf("dial the recovered listener: %v", err)
	}
	c.Close()
	if st := e.plane.ListenerStatus(id + 1000); st.State != model.ListenerPending {
		t.Errorf("unknown config: %+v", st)
	}
}

// TestUnservableSnapshotIsAFailureUntilFixed: a config whose snapshot cannot be built
// (here a node address the API would refuse) is reported failed while its listener
// keeps serving the snapshot before, and the failure clears once a good one is served.
func TestUnservableSnapshotIsAFailureUntilFixed(t *testing.T) {
	p := New(Options{Grace: time.Second, Log: slog.New(slog.DiscardHandler)})
	defer p.Close()
	c := config(model.ProtocolTCP, 80, node("aa1", "127.0.49.2:9", 1))
	c.ID, c.NodeBalancerID, c.Nodes[0].ID = 7, 1, 70
	state := func(addr string) store.State {
		cc := c
		cc.Nodes = []model.Node{c.Nodes[0]}
		cc.Nodes[0].Address = addr
		return store.State{NodeBalancers: []store.NodeBalancerState{{
			NodeBalancer: model.NodeBalancer{ID: 1, IPv4: "127.0.48.1"}, Configs: []model.ConfigWithNodes{cc}}}}
	}
	p.Reconcile(state("127.0.49.2:9"))
	if st := p.ListenerStatus(7); st.State != model.ListenerOpen {
		t.Fatalf("good config: %+v", st)
	}
	p.Reconcile(state("not an address"))
	if st := p.ListenerStatus(7); st.State != model.ListenerFailed || !strings.Contains(st.Error, "config cannot be served") {
		t.Errorf("unservable config: %+v", st)
	}
	if got := p.Listening(); got[7].String() != "127.0.48.1:80" {
		t.Errorf("the listener must keep serving the snapshot before: %v", got)
	}
	p.Reconcile(state("127.0.49.3:9"))
	if st := p.ListenerStatus(7); st.State != model.ListenerOpen || len(p.Failed()) != 0 {
		t.Errorf("fixed config: %+v, failed %v", st, p.Failed())
	}
}
