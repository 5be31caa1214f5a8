package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/server"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// udpPort is the port every udp echo backend of these tests listens on.
const udpPort = 5300

// udpNode is an echo backend on its own loopback address, with an optional TCP
// listener on the check port that active checks connect to.
type udpNode struct {
	name  string
	echo  *testnet.UDPEcho
	check net.Listener
	mu    sync.Mutex
}

func (e *env) udpNode(name string, host byte, checkPort int) *udpNode {
	e.t.Helper()
	n := &udpNode{name: name, echo: testnet.ServeUDPEcho(e.t, name, netip.AddrPortFrom(e.backendIP(host), udpPort).String())}
	if checkPort != 0 {
		n.listenCheck(e.t, netip.AddrPortFrom(e.backendIP(host), uint16(checkPort)))
	}
	return n
}

// listenCheck (re)opens the node's TCP check port.
func (n *udpNode) listenCheck(t *testing.T, at netip.AddrPort) {
	t.Helper()
	ln := testnet.ServeConns(t, at.String(), func(net.Conn) {})
	n.mu.Lock()
	n.check = ln
	n.mu.Unlock()
}

func (n *udpNode) closeCheck() {
	n.mu.Lock()
	n.check.Close()
	n.mu.Unlock()
}

func (n *udpNode) spec(weight int, mode linodego.NodeMode) nodeSpec {
	return nodeSpec{name: n.name, addr: n.echo.Addr(), weight: weight, mode: mode}
}

// udpEnv starts a server whose udp sessions end after timeout without traffic.
func udpEnv(t *testing.T, timeout time.Duration) *env {
	return newEnvWith(t, func(c *server.Config) { c.UDPSessionTimeout = timeout })
}

// udpBalancer creates a NodeBalancer (with client_udp_sess_throttle) holding one udp
// config on port 5353 and the given nodes, and waits until it answers.
func (e *env) udpBalancer(throttle int, opts linodego.NodeBalancerConfigCreateOptions, nodes ...nodeSpec) *lb {
	e.t.Helper()
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local", ClientUDPSessThrottle: &throttle})
	if err != nil {
		e.t.Fatal(err)
	}
	opts.Port, opts.Protocol = 5353, linodego.ProtocolUDP
	cfg, err := e.lc.CreateNodeBalancerConfig(e.ctx, nb.ID, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	l := &lb{e: e, nbID: nb.ID, cfgID: cfg.ID, ids: map[string]int{}, proto: cfg.Protocol,
		front: netip.AddrPortFrom(netip.MustParseAddr(*nb.IPv4), uint16(cfg.Port))}
	for _, n := range nodes {
		l.addNode(n)
	}
	// A probe from its own client address (254) shows when the config serves; the
	// last node added may take a moment more to be applied.
	probe := e.udpClient(254)
	waitFor(e.t, modeChangeBound, "udp config "+l.front.String()+" to answer", func() bool {
		_, err := probe.ask(l.front, "who?", 50*time.Millisecond)
		return err == nil
	})
	applied()
	return l
}

// udpClient is a client socket on client host src, port chosen by the kernel.
type udpClient struct {
	c   *net.UDPConn
	buf []byte
}

func (e *env) udpClient(src byte) *udpClient {
	e.t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(e.clientIP(src), 0)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &udpClient{c: c, buf: make([]byte, 1<<16)}
}

// ask sends msg to front and returns the reply.
func (u *udpClient) ask(front netip.AddrPort, msg string, wait time.Duration) (string, error) {
	if _, err := u.c.WriteToUDPAddrPort([]byte(msg), front); err != nil {
		return "", err
	}
	u.c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := u.c.ReadFromUDPAddrPort(u.buf)
	if err != nil {
		return "", err
	}
	if from != front {
		return "", fmt.Errorf("reply from %v, not the frontend %v", from, front)
	}
	return string(u.buf[:n]), nil
}

// who returns the node serving u's session.
func (u *udpClient) who(t testing.TB, front netip.AddrPort) string {
	t.Helper()
	got, err := u.ask(front, "who?", 2*time.Second)
	if err != nil {
		t.Fatalf("udp client %v: %v", u.c.LocalAddr(), err)
	}
	return got
}

// metric returns the value of the /metrics sample whose line starts with prefix.
func (e *env) metric(prefix string) float64 {
	e.t.Helper()
	r, err := http.Get(e.api + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix+" ") {
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, prefix+" "), 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return v
		}
	}
	e.t.Fatalf("no metric %s", prefix)
	return 0
}

func TestUDPWeightedSpreadOverThreeNodes(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a, b, c := e.udpNode("a", 1, 0), e.udpNode("b", 2, 0), e.udpNode("c", 3, 0)
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(25, ""), b.spec(25, ""), c.spec(50, ""))
	got := map[string]int{}
	for i := range 40 { // ten rounds of the 1:1:2 cycle, one session each
		got[e.udpClient(byte(1+i)).who(t, l.front)]++
	}
	if got["a"] != 10 || got["b"] != 10 || got["c"] != 20 {
		t.Errorf("40 sessions over weights 25/25/50 went %v, want a:10 b:10 c:20", got)
	}
}

func TestUDPSessionAffinity(t *testing.T) {
	e := udpEnv(t, 300*time.Millisecond)
	a, b, c := e.udpNode("a", 1, 0), e.udpNode("b", 2, 0), e.udpNode("c", 3, 0)
	t.Run("a session keeps its node", func(t *testing.T) {
		l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""), b.spec(1, ""), c.spec(1, ""))
		clients := make([]*udpClient, 9)
		first := make([]string, 9)
		for i := range clients {
			clients[i] = e.udpClient(byte(10 + i))
			first[i] = clients[i].who(t, l.front)
		}
		for range 5 {
			for i, u := range clients {
				if got := u.who(t, l.front); got != first[i] {
					t.Fatalf("session %d moved from %s to %s", i, first[i], got)
				}
			}
		}
	})
	t.Run("source_ip keeps a client address on one node across sessions", func(t *testing.T) {
		l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{Stickiness: "source_ip"}, a.spec(1, ""), b.spec(1, ""), c.spec(1, ""))
		nodes := map[string]bool{}
		for ip := byte(30); ip < 36; ip++ {
			want := e.udpClient(ip).who(t, l.front)
			nodes[want] = true
			for range 4 { // new ports: new sessions
				if got := e.udpClient(ip).who(t, l.front); got != want {
					t.Fatalf("client address %d: a new session went to %s, its first to %s", ip, got, want)
				}
			}
		}
		if len(nodes) < 2 {
			t.Errorf("six client addresses all pinned to %v", nodes)
		}
	})
	t.Run("session keeps an address and port on its node after the session ends", func(t *testing.T) {
		l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{Stickiness: "session"}, a.spec(1, ""), b.spec(1, ""), c.spec(1, ""))
		u := e.udpClient(40)
		want := u.who(t, l.front)
		for round := range 3 {
			time.Sleep(500 * time.Millisecond) // the session expires
			for i := range 2 {                 // other sessions move the round robin on
				e.udpClient(byte(41+2*round+i)).who(t, l.front)
			}
			if got := u.who(t, l.front); got != want {
				t.Fatalf("round %d: the same address and port came back to %s, pinned to %s", round, got, want)
			}
		}
	})
}

func TestUDPRingHashMovesAboutOneNthWhenANodeIsAdded(t *testing.T) {
	e := udpEnv(t, 200*time.Millisecond)
	nodes := []*udpNode{e.udpNode("a", 1, 0), e.udpNode("b", 2, 0), e.udpNode("c", 3, 0)}
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{Algorithm: "ring_hash"},
		nodes[0].spec(50, ""), nodes[1].spec(50, ""), nodes[2].spec(50, ""))
	const clients = 200
	us := make([]*udpClient, clients)
	before := make([]string, clients)
	for i := range us {
		us[i] = e.udpClient(byte(1 + i))
		before[i] = us[i].who(t, l.front)
	}
	// The same addresses from new ports (new sessions) map alike: the hash is of the address.
	for i := 0; i < clients; i += 20 {
		if got := e.udpClient(byte(1+i)).who(t, l.front); got != before[i] {
			t.Fatalf("client %d: new session on %s, first on %s", i, got, before[i])
		}
	}
	d := e.udpNode("d", 4, 0)
	l.addNode(d.spec(50, ""))
	applied()
	time.Sleep(400 * time.Millisecond) // every session has expired
	moved := 0
	for i, u := range us {
		got := u.who(t, l.front)
		if got != before[i] {
			moved++
			if got != "d" {
				t.Errorf("client %d moved from %s to %s, not to the new node", i, before[i], got)
			}
		}
	}
	// 1/N of 200 with N = 4 is 50.
	if moved < 25 || moved > 80 {
		t.Errorf("%d of %d clients moved when a 4th node was added, want about %d", moved, clients, clients/4)
	}
	t.Logf("%d of %d client addresses moved to the new node (1/N = %d)", moved, clients, clients/4)
}

func TestUDPModes(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a, b, c := e.udpNode("a", 1, 0), e.udpNode("b", 2, 0), e.udpNode("c", 3, 0)
	t.Run("backup takes sessions only when no accept node can", func(t *testing.T) {
		l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""), b.spec(1, ""), c.spec(1, "backup"))
		for i := range 6 {
			if got := e.udpClient(byte(1+i)).who(t, l.front); got == "c" {
				t.Fatal("a backup node took a session while accept nodes were up")
			}
		}
		l.setMode("a", "reject")
		l.setMode("b", "reject")
		applied()
		for i := range 4 {
			if got := e.udpClient(byte(10+i)).who(t, l.front); got != "c" {
				t.Fatalf("with both accept nodes rejected a session went to %s, not the backup", got)
			}
		}
	})
	t.Run("drain keeps existing sessions and sticky clients only", func(t *testing.T) {
		l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{Stickiness: "source_ip"}, a.spec(1, ""), b.spec(1, ""))
		// Find a client address pinned to a, and keep its session open.
		var pinned *udpClient
		var ip byte
		for ip = 20; pinned == nil; ip++ {
			if u := e.udpClient(ip); u.who(t, l.front) == "a" {
				pinned = u
				break
			}
		}
		l.setMode("a", "drain")
		applied()
		if got := pinned.who(t, l.front); got != "a" {
			t.Fatalf("an existing session moved to %s when its node was drained", got)
		}
		if got := e.udpClient(ip).who(t, l.front); got != "a" {
			t.Fatalf("a new session of a client pinned to the drained node went to %s", got)
		}
		for i := range 6 {
			if got := e.udpClient(byte(40+i)).who(t, l.front); got == "a" {
				t.Fatal("a drained node took a new, unpinned client")
			}
		}
	})
	t.Run("reject moves existing sessions at their next datagram", func(t *testing.T) {
		l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""), b.spec(1, ""))
		var onA *udpClient
		for i := byte(60); onA == nil; i++ {
			if u := e.udpClient(i); u.who(t, l.front) == "a" {
				onA = u
			}
		}
		l.setMode("a", "reject")
		applied()
		if got := onA.who(t, l.front); got != "b" {
			t.Fatalf("a session on a rejected node answered from %s, want it moved to b", got)
		}
		for i := range 4 {
			if got := e.udpClient(byte(70+i)).who(t, l.front); got != "b" {
				t.Fatalf("a new session went to %s with a rejected", got)
			}
		}
	})
	t.Run("accept takes sessions again", func(t *testing.T) {
		l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, "reject"), b.spec(1, ""))
		l.setMode("a", "accept")
		applied()
		got := map[string]int{}
		for i := range 4 {
			got[e.udpClient(byte(80+i)).who(t, l.front)]++
		}
		if got["a"] != 2 || got["b"] != 2 {
			t.Errorf("after accept: %v, want 2 and 2", got)
		}
	})
}

func TestUDPSessionThrottle(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a := e.udpNode("a", 1, 0)
	l := e.udpBalancer(3, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""))
	// The readiness probe may have been refused while the config had no node yet.
	refusedMetric := fmt.Sprintf(`nodebalancer_config_refused_connections_total{config_port="5353",nodebalancer="%s"}`, e.label(l))
	refused0 := e.metric(refusedMetric)
	answered := 0
	for range 6 { // six sessions (ports) from one address within a second
		if _, err := e.udpClient(1).ask(l.front, "hi", 300*time.Millisecond); err == nil {
			answered++
		}
	}
	if answered != 3 {
		t.Errorf("%d of 6 new sessions from one address answered within a second, want 3 (client_udp_sess_throttle 3)", answered)
	}
	// Another address is not affected, and an open session is not throttled.
	other := e.udpClient(2)
	for range 5 {
		if _, err := other.ask(l.front, "hi", time.Second); err != nil {
			t.Fatalf("another address's session: %v", err)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := e.udpClient(1).ask(l.front, "hi", time.Second); err != nil {
		t.Errorf("a second later the throttled address still cannot start a session: %v", err)
	}
	if refused := e.metric(refusedMetric) - refused0; refused != 3 {
		t.Errorf("refused sessions counted %v, want 3", refused)
	}
}

func TestUDPNodeGoesDownThroughItsCheckPortAndComesBack(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a, b := e.udpNode("a", 1, 8053), e.udpNode("b", 2, 8053)
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{Check: "connection", CheckInterval: 2, CheckTimeout: 1, CheckAttempts: 1,
		UDPCheckPort: ptr(8053)}, a.spec(1, ""), b.spec(1, ""))
	l.waitStatus("a", "UP", 5*time.Second)
	var onA *udpClient
	for i := byte(1); onA == nil; i++ {
		if u := e.udpClient(i); u.who(t, l.front) == "a" {
			onA = u
		}
	}
	a.closeCheck() // the UDP echo keeps answering: only the check port says DOWN
	took := l.waitStatus("a", "DOWN", 6*time.Second)
	t.Logf("DOWN %v after its check port closed", took)
	if got := onA.who(t, l.front); got != "b" {
		t.Fatalf("the session on the DOWN node answered from %s, want it moved to b", got)
	}
	for i := range 4 {
		if got := e.udpClient(byte(20+i)).who(t, l.front); got != "b" {
			t.Fatalf("a new session went to the DOWN node")
		}
	}
	a.listenCheck(t, netip.AddrPortFrom(e.backendIP(1), 8053))
	l.waitStatus("a", "UP", 6*time.Second)
	// The API shows the status as the checker sets it; the data plane's pick table
	// follows from the checker's delivery goroutine, a moment later (under a loaded
	// CI, 4 sessions could all be made in between): new sessions, each from an
	// address of its own (the per-address throttle), must reach a within a second.
	got := map[string]int{}
	for i := 0; got["a"] == 0; i++ {
		if i == 50 {
			t.Fatalf("after coming back UP node a took none of 50 new sessions in a second: %v", got)
		}
		got[e.udpClient(byte(30+i)).who(t, l.front)]++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("new sessions until one reached a: %v", got)
}

func TestUDPSessionExpiresAndFreesItsSocket(t *testing.T) {
	e := udpEnv(t, 300*time.Millisecond)
	a := e.udpNode("a", 1, 0)
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""))
	active := fmt.Sprintf(`nodebalancer_config_active_connections{config_port="5353",nodebalancer="%s"}`, e.label(l))
	waitFor(t, 2*time.Second, "the probe's session to expire", func() bool { return e.metric(active) == 0 })
	u := e.udpClient(1)
	u.who(t, l.front)
	if got := e.metric(active); got != 1 {
		t.Fatalf("%v active sessions after one client's first datagram", got)
	}
	sources := a.echo.Sources()
	took := waitFor(t, 2*time.Second, "the idle session to end", func() bool { return e.metric(active) == 0 })
	if took < 200*time.Millisecond {
		t.Errorf("the session ended %v after its last datagram, before the 300 ms timeout", took)
	}
	// The next datagram from the same address and port is a new session: a new node socket.
	u.who(t, l.front)
	if a.echo.Sources() != sources+1 {
		t.Errorf("after expiry the node saw %d sources, want %d (a new node socket)", a.echo.Sources(), sources+1)
	}
}

func TestUDPCountersGrowByExactlyTheBytesSent(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a := e.udpNode("a", 1, 0)
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""))
	label := e.label(l)
	nbBytes := func(dir string) float64 {
		return e.metric(fmt.Sprintf(`nodebalancer_bytes_total{direction="%s",nodebalancer="%s"}`, dir, label))
	}
	cfgBytes := func(dir string) float64 {
		return e.metric(fmt.Sprintf(`nodebalancer_config_bytes_total{config_port="5353",direction="%s",nodebalancer="%s"}`, dir, label))
	}
	sessions := func() float64 {
		return e.metric(fmt.Sprintf(`nodebalancer_connections_total{nodebalancer="%s"}`, label))
	}
	in0, out0, cin0, cout0, s0 := nbBytes("in"), nbBytes("out"), cfgBytes("in"), cfgBytes("out"), sessions()
	tr0 := e.transfer(l)
	sent := 0
	for i, size := range []int{1, 100, 1472, 9000, 65507} {
		u := e.udpClient(byte(1 + i))
		msg := strings.Repeat("x", size)
		for range 3 {
			if got, err := u.ask(l.front, msg, 2*time.Second); err != nil || len(got) != size {
				t.Fatalf("%d-byte datagram: %d bytes back, %v", size, len(got), err)
			}
			sent += size
		}
	}
	want := float64(sent)
	type check struct {
		name      string
		got, want float64
	}
	checks := func() []check {
		return []check{
			{"NodeBalancer bytes in", nbBytes("in") - in0, want},
			{"NodeBalancer bytes out", nbBytes("out") - out0, want},
			{"config bytes in", cfgBytes("in") - cin0, want},
			{"config bytes out", cfgBytes("out") - cout0, want},
			{"sessions", sessions() - s0, 5},
			{"transfer total (bytes)", (e.transfer(l) - tr0) * (1 << 20), 2 * want},
		}
	}
	// The config's and NodeBalancer's counters take a batch's bytes after the batch
	// is sent, so a reply can reach the client a moment before its bytes are counted.
	var last []check
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		last = checks()
		settled := true
		for _, c := range last {
			if c.got > c.want {
				t.Fatalf("%s grew by %v, more than the %v sent", c.name, c.got, c.want)
			}
			settled = settled && c.got == c.want
		}
		if settled || time.Now().After(deadline) {
			break
		}
	}
	for _, c := range last {
		if c.got != c.want {
			t.Errorf("%s grew by %v, want %v", c.name, c.got, c.want)
		}
	}
}

// label is the balancer's NodeBalancer label.
func (e *env) label(l *lb) string {
	e.t.Helper()
	nb, err := e.lc.GetNodeBalancer(e.ctx, l.nbID)
	if err != nil {
		e.t.Fatal(err)
	}
	return *nb.Label
}

// transfer is the NodeBalancer's transfer total, in MB.
func (e *env) transfer(l *lb) float64 {
	e.t.Helper()
	nb, err := e.lc.GetNodeBalancer(e.ctx, l.nbID)
	if err != nil {
		e.t.Fatal(err)
	}
	if nb.Transfer.Total == nil {
		return 0
	}
	return *nb.Transfer.Total
}

func TestUDPConfigSwitchesProtocolAndBack(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a := e.udpNode("a", 1, 0)
	tb := e.tcpBackend("t", 2)
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""))
	port := int(l.front.Port())
	// udp → tcp: the UDP socket closes, a TCP listener opens on the same port.
	if _, err := e.lc.RebuildNodeBalancerConfig(e.ctx, l.nbID, l.cfgID, linodego.NodeBalancerConfigRebuildOptions{
		Port: port, Protocol: "tcp", Algorithm: "roundrobin", Stickiness: "none",
		Nodes: []linodego.NodeBalancerConfigRebuildNodeOptions{{NodeBalancerNodeCreateOptions: linodego.NodeBalancerNodeCreateOptions{
			Address: tb.addr.String(), Label: "node-t", Weight: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, modeChangeBound, "the tcp listener", func() bool {
		n, err := e.tcpNode(l.front, 1)
		return err == nil && n == "t"
	})
	if _, err := e.udpClient(2).ask(l.front, "who?", 300*time.Millisecond); err == nil {
		t.Fatal("the config still answers over UDP after becoming tcp")
	}
	// tcp → udp again.
	if _, err := e.lc.RebuildNodeBalancerConfig(e.ctx, l.nbID, l.cfgID, linodego.NodeBalancerConfigRebuildOptions{
		Port: port, Protocol: "udp", Algorithm: "ring_hash", Stickiness: "none",
		Nodes: []linodego.NodeBalancerConfigRebuildNodeOptions{{NodeBalancerNodeCreateOptions: linodego.NodeBalancerNodeCreateOptions{
			Address: a.echo.Addr().String(), Label: "node-a", Weight: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	u := e.udpClient(3)
	waitFor(t, modeChangeBound, "the udp proxy again", func() bool {
		got, err := u.ask(l.front, "who?", 100*time.Millisecond)
		return err == nil && got == "a"
	})
	waitFor(t, modeChangeBound, "the tcp listener to close", func() bool {
		c, err := net.DialTimeout("tcp", l.front.String(), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

func TestUDPPortUnreachableTakesANodeDownPassively(t *testing.T) {
	e := udpEnv(t, time.Minute)
	b := e.udpNode("b", 2, 0)
	// Node a's address has nothing bound: each datagram sent there draws an ICMP
	// port-unreachable. No active checks: only passive ones can see it.
	dead := nodeSpec{name: "a", addr: netip.AddrPortFrom(e.backendIP(1), udpPort), weight: 1}
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{Check: "none"}, dead, b.spec(1, ""))
	for i := range 8 {
		u := e.udpClient(byte(1 + i))
		// A session on a gets no answer; its next datagram starts a session elsewhere.
		waitFor(t, 2*time.Second, "an answer", func() bool {
			got, err := u.ask(l.front, "who?", 100*time.Millisecond)
			return err == nil && got == "b"
		})
	}
	took := l.waitStatus("a", "DOWN", 5*time.Second)
	t.Logf("passive checks took the unreachable node DOWN (%v after the probes)", took)
	for i := range 6 {
		if got, err := e.udpClient(byte(20+i)).ask(l.front, "who?", time.Second); err != nil || got != "b" {
			t.Fatalf("a new session with a DOWN: %q, %v", got, err)
		}
	}
}

func TestUDPFirewallDropsNewSessionsFirst(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a := e.udpNode("a", 1, 0)
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""))
	c1, c2 := e.clientIP(1), e.clientIP(2)
	open := e.udpClient(2) // a session from c2 that starts before the rule
	if got := open.who(t, l.front); got != "a" {
		t.Fatalf("session before the firewall answered by %q", got)
	}
	_, err := e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "udp-guard",
		Rules: linodego.FirewallRuleSet{InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT", Inbound: []linodego.FirewallRule{
			{Action: "DROP", Label: "deny-2-udp", Protocol: "UDP", Ports: "5353", Addresses: linodego.NetworkAddresses{IPv4: &[]string{host(c2).String()}}},
		}},
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{l.nbID}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, modeChangeBound, "the firewall to drop a new udp session from "+c2.String(), func() bool {
		_, err := e.udpClient(2).ask(l.front, "hi", 100*time.Millisecond)
		return err != nil
	})
	before := e.droppedMetric(l.nbID, "deny-2-udp")
	for range 3 {
		if _, err := e.udpClient(2).ask(l.front, "hi", 200*time.Millisecond); err == nil {
			t.Fatal("a new udp session from a dropped address was answered")
		}
	}
	if after := e.droppedMetric(l.nbID, "deny-2-udp"); after != before+3 {
		t.Errorf("nodebalancer_firewall_dropped_total{rule=deny-2-udp}: %d then %d, want +3", before, after)
	}
	if _, err := e.udpClient(1).ask(l.front, "hi", 2*time.Second); err != nil {
		t.Errorf("an allowed address %v: %v", c1, err)
	}
	if _, err := open.ask(l.front, "still here", 2*time.Second); err != nil {
		t.Errorf("the session established before the rule ended: %v", err)
	}
}
