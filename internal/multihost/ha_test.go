package multihost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/linode/linodego"
	"github.com/mdlayher/arp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/nodebalancer/nodebalancer/internal/etcdtest"
)

// haLab is the network of the failover tests, all in 198.18.8.0/24: a bridge in the
// root namespace (198.18.8.1, where the embedded etcd listens) joining a namespace per
// host (.2, .3, .4), a backend namespace (.50) and a client namespace (.100). The
// frontend addresses come from 198.18.8.192/28 on the same link, so the client finds
// them by ARP, and only the holder has them.
type haLab struct {
	t      *testing.T
	bridge string
	ns     map[string]string
	addr   map[string]string
}

const (
	haGateway = "198.18.8.1"
	haPool    = "198.18.8.192/28"
	haBackend = "198.18.8.50:8080"
)

// startHAEtcd starts the labs' etcd, on the gateway address, and a client of it.
func startHAEtcd(t *testing.T) (endpoint string, cli *clientv3.Client) {
	t.Helper()
	ec := etcdtest.Start(t, 1, haGateway)
	cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return ec.Endpoints()[0], cli
}

// waitServed waits until a request from the client namespace to front is answered,
// failing the test (naming the holder) after within.
func (l *haLab) waitServed(t *testing.T, cli *clientv3.Client, front string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var err error
		l.inNS("client", func() error { _, err = request(front, "/"); return nil })
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not served within %s: %v (holder %q)", front, within, err, holderOf(t, cli))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startHAHost starts host id of the lab on the etcd at endpoint, holding frontends
// on eth0 from pool, with the given --shutdown-grace.
func (l *haLab) startHAHost(t *testing.T, endpoint, id, pool, grace string) *host {
	t.Helper()
	return mustStartHost(t, l.ns[id], id, "--store", "etcd", "--etcd-endpoints", endpoint, "--etcd-timeout", "10s", // start-up on a loaded CI machine
		"--listen", l.addr[id]+":8080", "--frontend-interface", "eth0", "--frontend-pool", pool,
		"--backend-cidrs", "198.18.0.0/15", "--shutdown-grace", grace)
}

// webNB creates, through h, a NodeBalancer with one http config on port 80 whose one
// node is the lab's backend.
func webNB(t *testing.T, h *host, label string) *linodego.NodeBalancer {
	t.Helper()
	nb, err := h.lc.CreateNodeBalancer(context.Background(), linodego.NodeBalancerCreateOptions{
		Label: &label, Region: "local",
		Configs: []*linodego.NodeBalancerConfigCreateOptions{{
			Port: 80, Protocol: linodego.ProtocolHTTP, Check: linodego.CheckNone,
			Nodes: []linodego.NodeBalancerNodeCreateOptions{{Label: "web", Address: haBackend, Weight: 100, Mode: linodego.ModeAccept}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return nb
}

func newHALab(t *testing.T, hosts ...string) *haLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("failover tests need root to create network namespaces and send ARP (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("failover tests need iproute2's ip")
	}
	// Random, as newLab's: a lab being torn down never collides with the next.
	suffix := fmt.Sprintf("%06x", rand.IntN(1<<24))
	l := &haLab{t: t, bridge: "nbha" + suffix, ns: map[string]string{}, addr: map[string]string{}}
	t.Cleanup(l.remove)
	l.ip("link", "add", l.bridge, "type", "bridge")
	l.ip("addr", "add", haGateway+"/24", "dev", l.bridge)
	l.ip("link", "set", l.bridge, "up")
	roles := append(append([]string{}, hosts...), "backend", "client")
	for i, role := range roles {
		ns := "nbha-" + role + "-" + suffix
		veth := fmt.Sprintf("nbh%d%s", i, suffix)
		addr := fmt.Sprintf("198.18.8.%d", 2+i)
		switch role {
		case "backend":
			addr = "198.18.8.50"
		case "client":
			addr = "198.18.8.100"
		}
		l.ns[role], l.addr[role] = ns, addr
		l.ip("netns", "add", ns)
		l.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip("link", "set", veth, "master", l.bridge)
		l.ip("link", "set", veth, "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		// IPv6: fd00:18:8::N/64 beside 198.18.8.N (ULA, only inside the lab).
		l.ip("-n", ns, "addr", "add", ula(addr)+"/64", "dev", "eth0", "nodad")
		l.ip("-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

// ula is the lab's IPv6 address beside the IPv4 one 198.18.8.N: fd00:18:8::N (N in hex).
func ula(v4 string) string {
	a := netip.MustParseAddr(v4).As4()
	return fmt.Sprintf("fd00:18:8::%x", a[3])
}

func (l *haLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veths and addresses go with them) and the bridge.
func (l *haLab) remove() {
	for _, ns := range l.ns {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	exec.Command("ip", "link", "del", l.bridge).Run()
}

// inNS runs f on an OS thread switched into role's namespace; sockets f makes stay
// there. The thread is never switched back: Go retires it with the goroutine.
func (l *haLab) inNS(role string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := os.Open("/var/run/netns/" + l.ns[role])
		if err != nil {
			errc <- err
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", role, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// serveBackend runs an http backend in the backend namespace: / answers at once,
// /slow after 1.5 s, /big with 8 MiB over about a second.
func (l *haLab) serveBackend() {
	l.t.Helper()
	var ln net.Listener
	if err := l.inNS("backend", func() (err error) { ln, err = net.Listen("tcp", haBackend); return }); err != nil {
		l.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(1500 * time.Millisecond)
		io.WriteString(w, "slow-ok\n")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		// bigSize bytes, each known (bigByte), in 32 KiB pieces 4 ms apart: about a
		// second, so that it is still being sent after a handover.
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		buf := make([]byte, 32<<10)
		for off := 0; off < bigSize; off += len(buf) {
			for i := range buf {
				buf[i] = bigByte(off + i)
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(4 * time.Millisecond)
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	l.t.Cleanup(func() { srv.Close() })
}

// result is one request of the load.
type result struct {
	start, end time.Time
	err        error
	// connect is true when the error came before the connection was made: a new
	// connection failed, rather than one in flight.
	connect bool
}

// load sends requests to addr from the client namespace, each on a new connection
// (so every request needs the address to be reachable now), one started every 10 ms
// whatever the earlier ones are doing (open loop: a stalled connect does not hold the
// next request back), until stop is closed. Bounded: 100 requests/s, each at most 8 s.
type load struct {
	mu      sync.Mutex
	results []result
	wg      sync.WaitGroup
	stop    chan struct{}
}

func (l *haLab) startLoad(addr string) *load {
	ld := &load{stop: make(chan struct{})}
	ld.wg.Add(1)
	go func() {
		defer ld.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ld.stop:
				return
			case <-t.C:
			}
			ld.wg.Add(1)
			go func() {
				defer ld.wg.Done()
				r := result{start: time.Now()}
				l.inNS("client", func() error { _, r.err = request(addr, "/"); return nil })
				r.end = time.Now()
				var op *net.OpError
				r.connect = errors.As(r.err, &op) && op.Op == "dial"
				ld.mu.Lock()
				ld.results = append(ld.results, r)
				ld.mu.Unlock()
			}()
		}
	}()
	return ld
}

func (ld *load) finish() []result {
	close(ld.stop)
	ld.wg.Wait()
	return ld.results
}

// failed counts failed requests; recovery is, for a fault at t0, how long after it
// new connections succeed again: the end of the first request started after t0 that
// succeeded within 200 ms (one that waited for SYN retransmits does not count).
func summarize(rs []result, t0 time.Time) (total, failed, connectFailed int, recovery time.Duration, errs []string) {
	first := time.Time{}
	for _, r := range rs {
		total++
		if r.err != nil {
			failed++
			if r.connect {
				connectFailed++
			}
			if len(errs) < 5 {
				errs = append(errs, r.err.Error())
			}
			continue
		}
		if r.start.After(t0) && r.end.Sub(r.start) < 200*time.Millisecond && (first.IsZero() || r.end.Before(first)) {
			first = r.end
		}
	}
	if !first.IsZero() {
		recovery = first.Sub(t0)
	}
	return
}

// request makes one http request on a new connection (connect within 3 s, answer
// within 5 s) and returns the body.
func request(addr, path string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: nb\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

// arpWatch asks, from the client namespace, who has vip every 20 ms and records
// every ARP reply for it by round, so that two hosts answering one request show.
type arpWatch struct {
	round   atomic.Int64
	mu      sync.Mutex
	replies map[int64]map[string]bool // round → sender hardware addresses
	c       *arp.Client
	done    chan struct{}
}

func (l *haLab) watchARP(vip netip.Addr) *arpWatch {
	l.t.Helper()
	w := &arpWatch{replies: map[int64]map[string]bool{}, done: make(chan struct{})}
	err := l.inNS("client", func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		w.c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	go func() {
		for {
			p, _, err := w.c.Read()
			if err != nil {
				return
			}
			if p.Operation != arp.OperationReply || p.SenderIP != vip {
				continue
			}
			r := w.round.Load()
			w.mu.Lock()
			if w.replies[r] == nil {
				w.replies[r] = map[string]bool{}
			}
			w.replies[r][p.SenderHardwareAddr.String()] = true
			w.mu.Unlock()
		}
	}()
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
			}
			w.round.Add(1)
			w.c.Request(vip)
		}
	}()
	return w
}

// stop ends the watch and returns the rounds answered, the distinct hardware
// addresses seen, and the rounds two or more of them answered.
func (w *arpWatch) stop() (answered int, macs []string, double []string) {
	close(w.done)
	time.Sleep(50 * time.Millisecond)
	w.c.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for r, m := range w.replies {
		answered++
		var in []string
		for mac := range m {
			seen[mac] = true
			in = append(in, mac)
		}
		if len(in) > 1 {
			double = append(double, fmt.Sprintf("round %d: %v", r, in))
		}
	}
	for mac := range seen {
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	return
}

// holder reads who holds the frontend addresses now ("" when nobody).
func holderOf(t *testing.T, cli *clientv3.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "/nodebalancer/c/frontend/holder")
	if err != nil || len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

// logTime is when h last logged msg (zero when never).
func logTime(h *host, msg string) time.Time {
	var last time.Time
	for _, line := range strings.Split(h.log(), "\n") {
		var l struct {
			Time time.Time
			Msg  string
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == msg {
			last = l.Time
		}
	}
	return last
}

const (
	msgHold    = "holding the frontend addresses"
	msgRelease = "released the frontend addresses"
)

// TestFrontendFailover runs three hosts on one etcd with --frontend-interface eth0
// and a client that sends requests, each on a new connection, to the NodeBalancer's
// frontend address all along: the holder stopped (SIGTERM), killed (SIGKILL), coming
// back, and cut off from etcd. Figures: docs/ha.md.
func TestFrontendFailover(t *testing.T) {
	hostIDs := []string{"a", "b", "c"}
	l := newHALab(t, hostIDs...)
	l.serveBackend()
	endpoint, cli := startHAEtcd(t)

	hosts := map[string]*host{}
	start := func(id string) *host {
		t.Helper()
		h := l.startHAHost(t, endpoint, id, haPool, "5s")
		hosts[id] = h
		return h
	}
	for _, id := range hostIDs {
		start(id)
	}
	label := "ha-web"
	nb := webNB(t, hosts["a"], label)
	vip := netip.MustParseAddr(*nb.IPv4)
	if !netip.MustParsePrefix(haPool).Contains(vip) {
		t.Fatalf("frontend address %s is not from %s", vip, haPool)
	}
	front := netip.AddrPortFrom(vip, 80).String()
	waitServed := func(within time.Duration) { t.Helper(); l.waitServed(t, cli, front, within) }
	waitServed(15 * time.Second)
	holder := holderOf(t, cli)
	if hosts[holder] == nil {
		t.Fatalf("holder %q is not one of the hosts", holder)
	}
	t.Logf("frontend %s held by %s", front, holder)
	// The hosts' API listens on 198.18.8.x, not loopback: /metrics wants a token
	// without anyone asking for it.
	if r, err := (&http.Client{Timeout: 5 * time.Second}).Get(hosts["a"].url + "/metrics"); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token on a non-loopback --listen: %v %v; want 401", r, err)
	} else {
		r.Body.Close()
	}
	// Each host says whether it holds: exactly one does.
	holding := 0
	for _, id := range hostIDs {
		st, body, err := hosts[id].get("/metrics")
		if err != nil || st != 200 {
			t.Fatalf("GET /metrics with a token on %s: %d %v", id, st, err)
		}
		want := "nodebalancer_frontend_holding 0\n"
		if id == holder {
			want = "nodebalancer_frontend_holding 1\n"
			holding++
		}
		if !strings.Contains(body, want) || !strings.Contains(body, "# TYPE nodebalancer_frontend_holding gauge\n") {
			t.Errorf("/metrics on %s lacks %q", id, want)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		if fams, err := p.TextToMetricFamilies(strings.NewReader(body)); err != nil || fams["go_goroutines"] == nil || fams["nodebalancer_frontend_holding"] == nil {
			t.Errorf("/metrics on %s does not parse whole: %v", id, err)
		}
	}
	if holding != 1 {
		t.Errorf("%d hosts say they hold", holding)
	}
	for _, id := range hostIDs {
		st, body, err := hosts[id].get("/cluster")
		var resp struct {
			FrontendHolder string `json:"frontend_holder"`
		}
		if err != nil || st != 200 || json.Unmarshal([]byte(body), &resp) != nil || resp.FrontendHolder != holder {
			t.Errorf("GET /cluster on %s: %d %v %s; want frontend_holder %q", id, st, err, body, holder)
		}
	}

	t.Run("NodeBalancers added and removed", func(t *testing.T) {
		// A NodeBalancer created while a host holds is held too, and one deleted
		// leaves the holder's interface.
		label := "ha-second"
		nb2 := webNB(t, hosts["b"], label)
		second := netip.AddrPortFrom(netip.MustParseAddr(*nb2.IPv4), 80).String()
		t0 := time.Now()
		for {
			var err error
			l.inNS("client", func() error { _, err = request(second, "/"); return nil })
			if err == nil {
				break
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("a NodeBalancer created while %s holds: %s not served in 5 s: %v", holder, second, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("created NodeBalancer %s served after %s", second, time.Since(t0).Round(time.Millisecond))
		if err := hosts["b"].lc.DeleteNodeBalancer(context.Background(), nb2.ID); err != nil {
			t.Fatal(err)
		}
		t0 = time.Now()
		for {
			out, _ := exec.Command("ip", "-n", l.ns[holder], "addr", "show", "dev", "eth0").Output()
			if !strings.Contains(string(out), *nb2.IPv4+"/32") {
				break
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("deleted NodeBalancer's %s still on %s's eth0 after 5 s", *nb2.IPv4, holder)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("deleted NodeBalancer's address left the holder after %s", time.Since(t0).Round(time.Millisecond))
	})

	t.Run("holder key deleted", func(t *testing.T) {
		// Someone deletes the key by hand: the holder must let go, since another
		// host may now create it, and a host holds again.
		old := holder
		t0 := time.Now()
		if _, err := cli.Delete(context.Background(), "/nodebalancer/c/frontend/holder"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !logTime(hosts[old], msgRelease).After(t0) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still holds after its key was deleted", old)
			}
			time.Sleep(20 * time.Millisecond)
		}
		waitServed(5 * time.Second)
		holder = holderOf(t, cli)
		t.Logf("key deleted: %s released after %s; holder now %s", old, logTime(hosts[old], msgRelease).Sub(t0).Round(time.Millisecond), holder)
		if hosts[holder] == nil {
			t.Fatalf("holder %q after the key was deleted", holder)
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		old := holder
		ld := l.startLoad(front)
		time.Sleep(time.Second)
		// A slow request in flight when the holder is told to stop.
		slow := make(chan error, 1)
		go l.inNS("client", func() error {
			b, err := request(front, "/slow")
			if err == nil && b != "slow-ok\n" {
				err = fmt.Errorf("slow request answered %q", b)
			}
			slow <- err
			return nil
		})
		time.Sleep(200 * time.Millisecond)
		t0 := time.Now()
		hosts[old].cmd.Process.Signal(syscall.SIGTERM)
		<-hosts[old].exited
		stopped := time.Since(t0)
		time.Sleep(3 * time.Second)
		rs := ld.finish()
		total, failed, connectFailed, _, errs := summarize(rs, t0)
		holder = holderOf(t, cli)
		released, held := logTime(hosts[old], msgRelease), logTime(hosts[holder], msgHold)
		slowErr := <-slow
		t.Logf("SIGTERM of %s: %d requests, %d failed (%d to connect) %v; %s released at +%s, %s held at +%s; exited after %s; in-flight slow request: %v",
			old, total, failed, connectFailed, errs, old, released.Sub(t0).Round(time.Millisecond), holder, held.Sub(t0).Round(time.Millisecond),
			stopped.Round(time.Millisecond), slowErr)
		// Nothing fails: a connection made just before the handover whose request
		// reaches the new holder is forwarded to the old one (internal/ha, handover.go).
		if connectFailed != 0 || failed != 0 {
			t.Errorf("%d of %d requests failed across a SIGTERM of the holder, %d to connect: %v", failed, total, connectFailed, errs)
		}
		if holder == "" || holder == old {
			t.Errorf("holder after SIGTERM of %s: %q", old, holder)
		}
		if released.IsZero() || held.IsZero() || !released.Before(held) {
			t.Errorf("%s released at %s, %s held at %s: want the release first", old, released, holder, held)
		}
		// The old holder answers a request in flight from the address it gave up
		// (IP_TRANSPARENT) before its listeners close.
		if slowErr != nil {
			t.Errorf("the request in flight at SIGTERM failed: %v", slowErr)
		}
		start(old) // back as a candidate for what follows
	})

	t.Run("rolling restart", func(t *testing.T) {
		// docs/deploy.md's upgrade: every host that does not hold restarted one at
		// a time (nothing moves), then the holder (it hands over), under one load.
		ld := l.startLoad(front)
		time.Sleep(500 * time.Millisecond)
		t0 := time.Now()
		order := []string{}
		for _, id := range hostIDs {
			if id != holder {
				order = append(order, id)
			}
		}
		order = append(order, holder)
		for _, id := range order {
			hosts[id].stop(t)
			start(id)
		}
		time.Sleep(time.Second)
		rs := ld.finish()
		total, failed, connectFailed, _, errs := summarize(rs, t0)
		now := holderOf(t, cli)
		t.Logf("rolling restart %v in %s: %d requests, %d failed (%d to connect) %v; holder %s → %s",
			order, time.Since(t0).Round(time.Millisecond), total, failed, connectFailed, errs, holder, now)
		if connectFailed != 0 || failed != 0 {
			t.Errorf("%d of %d requests failed across a rolling restart, %d to connect: %v", failed, total, connectFailed, errs)
		}
		if now == "" || now == holder {
			t.Errorf("holder after the rolling restart: %q (was %q)", now, holder)
		}
		holder = now
	})

	t.Run("SIGKILL", func(t *testing.T) {
		old := holder
		ld := l.startLoad(front)
		time.Sleep(time.Second)
		t0 := time.Now()
		hosts[old].kill()
		// The killed process left the address on its interface, where the kernel
		// would go on answering for it; systemd's ExecStopPost runs
		// frontend-release at once, as here.
		if out, _ := exec.Command("ip", "-n", l.ns[old], "addr", "show", "dev", "eth0").Output(); !strings.Contains(string(out), vip.String()+"/32") {
			t.Errorf("the killed holder's interface lost %s by itself?\n%s", vip, out)
		}
		if out, err := exec.Command("ip", "netns", "exec", l.ns[old], buildBinary(t), "frontend-release",
			"--frontend-interface", "eth0", "--frontend-pool", haPool).CombinedOutput(); err != nil || !strings.Contains(string(out), "removed 1 ") {
			t.Errorf("frontend-release: %v\n%s", err, out)
		}
		if out, _ := exec.Command("ip", "-n", l.ns[old], "addr", "show", "dev", "eth0").Output(); strings.Contains(string(out), vip.String()) {
			t.Errorf("frontend-release left %s:\n%s", vip, out)
		}
		time.Sleep(5 * time.Second)
		rs := ld.finish()
		total, failed, _, recovery, errs := summarize(rs, t0)
		holder = holderOf(t, cli)
		held := logTime(hosts[holder], msgHold)
		t.Logf("SIGKILL of %s: %d requests, %d failed %v; %s held at +%s; new connections succeed again after %s",
			old, total, failed, errs, holder, held.Sub(t0).Round(time.Millisecond), recovery.Round(time.Millisecond))
		if holder == "" || holder == old {
			t.Fatalf("holder after SIGKILL of %s: %q", old, holder)
		}
		if recovery == 0 || recovery > 3*time.Second {
			t.Errorf("new connections succeeded again %s after SIGKILL of the holder; want within 3 s", recovery)
		}
		// The killed host comes back: it must not take the addresses from the holder.
		ld = l.startLoad(front)
		t1 := time.Now()
		back := start(old)
		time.Sleep(4 * time.Second)
		rs = ld.finish()
		total, failed, _, _, errs = summarize(rs, t1)
		now := holderOf(t, cli)
		t.Logf("%s back: %d requests, %d failed %v; holder %s", old, total, failed, errs, now)
		if now != holder || !logTime(back, msgHold).IsZero() {
			t.Errorf("%s came back and took the addresses (holder %q, was %q)", old, now, holder)
		}
		if failed != 0 {
			t.Errorf("%d of %d requests failed while %s came back: %v", failed, total, old, errs)
		}
	})

	t.Run("partition", func(t *testing.T) {
		old := holder
		w := l.watchARP(vip)
		ld := l.startLoad(front)
		time.Sleep(time.Second)
		t0 := time.Now()
		// Cut the holder off from etcd only: clients and the backend still reach it.
		l.ip("-n", l.ns[old], "route", "add", "blackhole", haGateway+"/32")
		deadline := time.Now().Add(10 * time.Second)
		for holderOf(t, cli) == old || holderOf(t, cli) == "" {
			if time.Now().After(deadline) {
				t.Fatalf("nobody took over from %s cut off from etcd", old)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		rs := ld.finish()
		answered, macs, double := w.stop()
		total, failed, _, recovery, errs := summarize(rs, t0)
		holder = holderOf(t, cli)
		released, held := logTime(hosts[old], msgRelease), logTime(hosts[holder], msgHold)
		t.Logf("partition of %s: released at +%s, %s held at +%s (gap %s); %d requests, %d failed %v, new connections succeed again after %s; ARP: %d rounds answered by %v, %d answered twice",
			old, released.Sub(t0).Round(time.Millisecond), holder, held.Sub(t0).Round(time.Millisecond),
			held.Sub(released).Round(time.Millisecond), total, failed, errs, recovery.Round(time.Millisecond), answered, macs, len(double))
		if released.IsZero() || !released.After(t0) || !released.Before(held) {
			t.Errorf("%s cut off released at %s, %s held at %s: want the release first", old, released, holder, held)
		}
		if len(double) > 0 {
			t.Errorf("two hosts answered ARP for %s at once: %v", vip, double)
		}
		if len(macs) != 2 {
			t.Errorf("ARP answers came from %v; want the old holder's then the new one's", macs)
		}
		// Healed: the old holder waits its turn.
		l.ip("-n", l.ns[old], "route", "del", "blackhole", haGateway+"/32")
		time.Sleep(3 * time.Second)
		if now := holderOf(t, cli); now != holder {
			t.Errorf("after the partition healed the holder is %q, was %q", now, holder)
		}
		waitServed(3 * time.Second)
	})
}
