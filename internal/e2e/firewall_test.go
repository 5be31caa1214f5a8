package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/server"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// rule is an inbound TCP rule for tests: action on the given networks and ports.
func rule(action, label, ports string, nets ...netip.Prefix) linodego.FirewallRule {
	var v4, v6 []string
	for _, p := range nets {
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	r := linodego.FirewallRule{Action: action, Label: label, Protocol: linodego.TCP, Ports: ports}
	if v4 != nil {
		r.Addresses.IPv4 = &v4
	}
	if v6 != nil {
		r.Addresses.IPv6 = &v6
	}
	return r
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// probe opens a raw connection from src to front, sends a line and reads what comes
// back within a second. It reports whether the balancer served the client (a byte
// came back) and, when it did not, whether the connection ended without one.
func probe(src netip.Addr, front netip.AddrPort) (served bool, err error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	c, err := d.Dial("tcp", front.String())
	if errors.Is(err, syscall.ECONNRESET) { // the reset came before connect returned
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "hello\r\n\r\n") // a tcp node answers with its name, an http config with a 400
	var b [1]byte
	n, err := c.Read(b[:])
	if n == 1 {
		return true, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, fmt.Errorf("no answer and no close within a second")
	}
	return false, nil // closed or reset without a byte: dropped
}

// mustProbe fails t unless the client from src is served (want) or dropped (!want).
func mustProbe(t testing.TB, src netip.Addr, front netip.AddrPort, want bool) {
	t.Helper()
	served, err := probe(src, front)
	if err != nil {
		t.Fatalf("%s → %s: %v", src, front, err)
	}
	if served != want {
		t.Fatalf("%s → %s: served %v, want %v", src, front, served, want)
	}
}

// untilProbe waits for the client from src to be served (want) or dropped and
// returns how long that took after the call.
func untilProbe(t testing.TB, src netip.Addr, front netip.AddrPort, want bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		served, err := probe(src, front)
		if err == nil && served == want {
			return time.Since(start)
		}
		if time.Since(start) > modeChangeBound {
			t.Fatalf("%s → %s still served=%v %v after the change", src, front, !want, modeChangeBound)
		}
		time.Sleep(time.Millisecond)
	}
}

// droppedMetric reads nodebalancer_firewall_dropped_total for NodeBalancer nbID and
// rule from /metrics.
func (e *env) droppedMetric(nbID int, rule string) int {
	e.t.Helper()
	r, err := http.Get(e.api + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	re := regexp.MustCompile(`(?m)^nodebalancer_firewall_dropped_total\{[^}]*nodebalancer_id="` + strconv.Itoa(nbID) +
		`",rule="` + regexp.QuoteMeta(rule) + `"\} (\d+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// addTCPConfig adds a tcp config on port to l's NodeBalancer with one node and
// returns its frontend once it listens.
func (l *lb) addTCPConfig(port int, node netip.AddrPort) netip.AddrPort {
	l.e.t.Helper()
	cfg, err := l.e.lc.CreateNodeBalancerConfig(l.e.ctx, l.nbID, linodego.NodeBalancerConfigCreateOptions{
		Port: port, Protocol: linodego.ProtocolTCP})
	if err != nil {
		l.e.t.Fatal(err)
	}
	if _, err := l.e.lc.CreateNodeBalancerNode(l.e.ctx, l.nbID, cfg.ID, linodego.NodeBalancerNodeCreateOptions{
		Address: node.String(), Label: "tcp-node"}); err != nil {
		l.e.t.Fatal(err)
	}
	front := netip.AddrPortFrom(l.front.Addr(), uint16(port))
	waitFor(l.e.t, modeChangeBound, "the tcp listener", func() bool { served, _ := probe(netip.Addr{}, front); return served })
	return front
}

func TestFirewallDropsAndAcceptsByAddressAndPort(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	e := newEnv(t, func(c *server.Config) { c.AccessLog = logPath })
	web := e.httpBackend("web", 1)
	l := e.balancer(linodego.NodeBalancerConfigCreateOptions{Port: 8080}, nodeSpec{name: "web", addr: web.addr})
	tb := e.tcpBackend("tcp", 2)
	httpFront, tcpFront := l.front, l.addTCPConfig(8081, tb.addr)
	c1, c2, c3, c4, c5 := e.clientIP(1), e.clientIP(2), e.clientIP(3), e.clientIP(4), e.clientIP(5)

	// An established session outlives the rule that would now drop it.
	old, err := e.dialTCP(tcpFront, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	fw, err := e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "by-addr-port",
		Rules: linodego.FirewallRuleSet{InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT", Inbound: []linodego.FirewallRule{
			rule("DROP", "deny-2", "", host(c2)),
			rule("DROP", "deny-3-tcp", "8081", host(c3)),
		}},
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{l.nbID}}})
	if err != nil {
		t.Fatal(err)
	}
	took := untilProbe(t, c2, httpFront, false)
	t.Logf("attaching a firewall reached new connections in %v", took)
	sessions := tb.sessions.Load()
	for _, c := range []struct {
		src       netip.Addr
		http, tcp bool
	}{{c1, true, true}, {c2, false, false}, {c3, true, false}, {c4, true, true}} {
		mustProbe(t, c.src, httpFront, c.http)
		mustProbe(t, c.src, tcpFront, c.tcp)
	}
	if got := tb.sessions.Load() - sessions; got != 2 { // c1 and c4
		t.Fatalf("the tcp node saw %d new sessions, want 2: a dropped client reached it", got)
	}
	if err := old.echo("still here"); err != nil {
		t.Fatalf("an established session ended when a rule came to drop its client: %v", err)
	}
	// HTTP clients see a failed request, never a response.
	if _, err := get(e.httpClient(2, false), l.url("/"), ""); err == nil {
		t.Fatal("a dropped http client got a response")
	}

	// The counter: five more drops of deny-2 show in /metrics.
	before := e.droppedMetric(l.nbID, "deny-2")
	for range 5 {
		mustProbe(t, c2, tcpFront, false)
	}
	if after := e.droppedMetric(l.nbID, "deny-2"); before < 1 || after != before+5 {
		t.Fatalf("nodebalancer_firewall_dropped_total{rule=deny-2}: %d then %d, want +5", before, after)
	}

	// Policy DROP: only what a rule accepts gets in; a UDP or ICMP rule does not
	// accept tcp; ports narrow an ACCEPT.
	udp := rule("ACCEPT", "udp-5", "", host(c5))
	udp.Protocol = linodego.UDP
	icmp := rule("ACCEPT", "icmp-5", "", host(c5))
	icmp.Protocol = linodego.ICMP
	if _, err := e.lc.UpdateFirewallRules(e.ctx, fw.ID, linodego.FirewallRuleSet{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
		Inbound: []linodego.FirewallRule{rule("ACCEPT", "allow-1", "", host(c1)), rule("ACCEPT", "web-3", "8080", host(c3)), udp, icmp}}); err != nil {
		t.Fatal(err)
	}
	took = untilProbe(t, c4, httpFront, false)
	t.Logf("a rule change reached new connections in %v", took)
	for _, c := range []struct {
		src       netip.Addr
		http, tcp bool
	}{{c1, true, true}, {c2, false, false}, {c3, true, false}, {c5, false, false}} {
		mustProbe(t, c.src, httpFront, c.http)
		mustProbe(t, c.src, tcpFront, c.tcp)
	}
	if n := e.droppedMetric(l.nbID, "inbound_policy"); n < 1 {
		t.Fatalf("drops by the policy: %d", n)
	}

	// A disabled firewall filters nothing; enabled again, it filters.
	if _, err := e.lc.UpdateFirewall(e.ctx, fw.ID, linodego.FirewallUpdateOptions{Status: linodego.FirewallDisabled}); err != nil {
		t.Fatal(err)
	}
	untilProbe(t, c5, tcpFront, true)
	mustProbe(t, c2, httpFront, true)
	if _, err := e.lc.UpdateFirewall(e.ctx, fw.ID, linodego.FirewallUpdateOptions{Status: linodego.FirewallEnabled}); err != nil {
		t.Fatal(err)
	}
	untilProbe(t, c5, tcpFront, false)

	// Detached, nothing is filtered.
	devs, err := e.lc.ListFirewallDevices(e.ctx, fw.ID, nil)
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v %v", devs, err)
	}
	if err := e.lc.DeleteFirewallDevice(e.ctx, fw.ID, devs[0].ID); err != nil {
		t.Fatal(err)
	}
	untilProbe(t, c5, tcpFront, true)

	// Every drop was logged with the rule that made it.
	waitFor(t, 2*time.Second, "the access log to show drops", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), `"rule":"deny-2"`) && strings.Contains(string(b), `"rule":"inbound_policy"`)
	})
	f, _ := os.Open(logPath)
	defer f.Close()
	sc := bufio.NewScanner(f)
	found := false
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"rule":"deny-2"`) {
			found = true
			if !strings.Contains(line, `"failure":"firewall"`) || !strings.Contains(line, `"client":"`+c2.String()+`:`) ||
				!strings.Contains(line, fmt.Sprintf(`"nodebalancer_id":%d`, l.nbID)) {
				t.Fatalf("drop line %s", line)
			}
		}
	}
	if !found {
		t.Fatal("no access log line for deny-2")
	}
}

// TestFirewallAttachDetachUnderLoad changes a NodeBalancer's firewall over and over
// while an allowed client keeps sending requests and opening sessions: none of them
// may fail.
func TestFirewallAttachDetachUnderLoad(t *testing.T) {
	e := newEnv(t)
	web := e.httpBackend("web", 1)
	l := e.balancer(linodego.NodeBalancerConfigCreateOptions{Port: 8080}, nodeSpec{name: "web", addr: web.addr})
	tb := e.tcpBackend("tcp", 2)
	tcpFront := l.addTCPConfig(8081, tb.addr)
	allowed, blocked := e.clientIP(1), e.clientIP(2)
	rules := linodego.FirewallRuleSet{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
		Inbound: []linodego.FirewallRule{rule("ACCEPT", "allow-1", "", host(allowed))}}
	fw, err := e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "churn", Rules: rules})
	if err != nil {
		t.Fatal(err)
	}

	fresh := background(httpSender(e.httpClient(1, false), l.url("/")))
	kept := background(httpSender(e.httpClient(1, true), l.url("/")))
	sessions := background(func() (string, error) { return e.tcpNode(tcpFront, 1) })
	var blockedDrops int
	stopBlocked := make(chan struct{})
	doneBlocked := make(chan struct{})
	go func() {
		defer close(doneBlocked)
		for {
			select {
			case <-stopBlocked:
				return
			default:
			}
			if served, err := probe(blocked, l.front); err == nil && !served {
				blockedDrops++
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for i := range 10 {
		d, err := e.lc.CreateFirewallDevice(e.ctx, fw.ID, linodego.FirewallDeviceCreateOptions{ID: l.nbID, Type: linodego.FirewallDeviceNodeBalancer})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
		rules.Inbound = append(rules.Inbound[:1], rule("DROP", "drop-2", strconv.Itoa(8000+i), host(blocked)))
		if _, err := e.lc.UpdateFirewallRules(e.ctx, fw.ID, rules); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
		if _, err := e.lc.UpdateFirewall(e.ctx, fw.ID, linodego.FirewallUpdateOptions{Status: linodego.FirewallDisabled}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.lc.UpdateFirewall(e.ctx, fw.ID, linodego.FirewallUpdateOptions{Status: linodego.FirewallEnabled}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
		if err := e.lc.DeleteFirewallDevice(e.ctx, fw.ID, d.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stopBlocked)
	<-doneBlocked
	total := 0
	for name, tr := range map[string]*traffic{"new connections": fresh, "keep-alive": kept, "tcp sessions": sessions} {
		ss := tr.finish()
		total += len(ss)
		if f := failures(ss); len(f) > 0 {
			t.Errorf("%s: %d of %d failed, first: %v", name, len(f), len(ss), f[0].err)
		}
		if len(ss) < 20 {
			t.Errorf("%s: only %d samples", name, len(ss))
		}
	}
	if blockedDrops == 0 {
		t.Error("the blocked client was never dropped while the firewall was attached")
	}
	t.Logf("%d requests and sessions from the allowed client, none failed; the blocked client was dropped %d times", total, blockedDrops)
}

// TestFirewallGuardsHTTPS: the check comes before the TLS handshake, so a dropped
// https client never gets a ServerHello, over HTTP/1.1 or h2.
func TestFirewallGuardsHTTPS(t *testing.T) {
	e := newEnv(t)
	opts := linodego.NodeBalancerConfigCreateOptions{Protocol: linodego.ProtocolHTTPS}
	cert := testcert.New(t, tlsName)
	opts.SSLCert, opts.SSLKey = cert.CertPEM, cert.KeyPEM
	roots := cert.Pool
	l := e.balancer(opts, nodeSpec{name: "a", addr: e.httpBackend("a", 1).addr})
	_, err := e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "tls-guard",
		Rules: linodego.FirewallRuleSet{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
			Inbound: []linodego.FirewallRule{rule("ACCEPT", "allow-1", "", host(e.clientIP(1)))}},
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{l.nbID}}})
	if err != nil {
		t.Fatal(err)
	}
	client := func(src byte, h2 bool) *http.Client {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: tlsName},
			DialContext:       (&net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: e.clientIP(src).AsSlice()}}).DialContext,
			ForceAttemptHTTP2: h2,
			DisableKeepAlives: true,
		}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	waitFor(t, modeChangeBound, "client 2 to be dropped", func() bool { _, err := get(client(2, false), l.url("/"), ""); return err != nil })
	for _, h2 := range []bool{false, true} {
		if r := mustGet(t, client(1, h2), l.url("/"), ""); (r.proto == 2) != h2 {
			t.Fatalf("allowed client spoke HTTP/%d", r.proto)
		}
		_, err := get(client(2, h2), l.url("/"), "")
		if err == nil || strings.Contains(err.Error(), "certificate") {
			t.Fatalf("dropped https client (h2 %v): %v, want the connection reset before any TLS", h2, err)
		}
	}
	if n := e.droppedMetric(l.nbID, "inbound_policy"); n < 2 {
		t.Fatalf("drops by the policy: %d", n)
	}
}

// TestFirewallComesBeforeTheThrottle: a dropped client is not counted by the
// throttle (nor anything else) — the firewall decides before anything is done.
func TestFirewallComesBeforeTheThrottle(t *testing.T) {
	e := newEnv(t)
	tb := e.tcpBackend("tcp", 1)
	l := e.balancer(linodego.NodeBalancerConfigCreateOptions{Protocol: linodego.ProtocolTCP}, nodeSpec{name: "tcp", addr: tb.addr})
	if _, err := e.lc.UpdateNodeBalancer(e.ctx, l.nbID, linodego.NodeBalancerUpdateOptions{ClientConnThrottle: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	c := e.clientIP(7)
	fw, err := e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "before-throttle",
		Rules:   linodego.FirewallRuleSet{InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT", Inbound: []linodego.FirewallRule{rule("DROP", "deny-7", "", host(c))}},
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{l.nbID}}})
	if err != nil {
		t.Fatal(err)
	}
	untilProbe(t, c, l.front, false)
	for range 5 {
		mustProbe(t, c, l.front, false)
	}
	devs, err := e.lc.ListFirewallDevices(e.ctx, fw.ID, nil)
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v %v", devs, err)
	}
	if err := e.lc.DeleteFirewallDevice(e.ctx, fw.ID, devs[0].ID); err != nil {
		t.Fatal(err)
	}
	// Within the same second as the drops: had the throttle (2 a second) counted
	// them, the client would wait out its window, about a second.
	if took := untilProbe(t, c, l.front, true); took > 500*time.Millisecond {
		t.Fatalf("the client was served only %v after the detach: the drops were throttled", took)
	}
}

// TestFirewallGuardsANewNodeBalancerFromItsFirstConnection: created with firewall_id,
// a NodeBalancer's listeners never take a client its firewall drops.
func TestFirewallGuardsANewNodeBalancerFromItsFirstConnection(t *testing.T) {
	e := newEnv(t)
	tb := e.tcpBackend("tcp", 1)
	fw, err := e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "from-the-start",
		Rules: linodego.FirewallRuleSet{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
			Inbound: []linodego.FirewallRule{rule("ACCEPT", "allow-1", "", host(e.clientIP(1)))}}})
	if err != nil {
		t.Fatal(err)
	}
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local", FirewallID: fw.ID,
		Configs: []*linodego.NodeBalancerConfigCreateOptions{{Port: 8080, Protocol: linodego.ProtocolTCP,
			Nodes: []linodego.NodeBalancerNodeCreateOptions{{Address: tb.addr.String(), Label: "tcp-node"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	front := netip.AddrPortFrom(netip.MustParseAddr(*nb.IPv4), 8080)
	deadline := time.Now().Add(modeChangeBound)
	for {
		served, err := probe(e.clientIP(2), front)
		if err == nil {
			if served {
				t.Fatal("the listener served a client the firewall drops before the firewall applied")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listener never opened: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	mustProbe(t, e.clientIP(1), front, true)
}
