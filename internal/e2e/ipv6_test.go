package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/linode/linodego"

	"github.com/nodebalancer/nodebalancer/internal/proxyproto"
	"github.com/nodebalancer/nodebalancer/internal/server"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// The IPv6 tests run in a network namespace of their own where fd00::/8 is routed
// to loopback (testnet.InNetNS): NodeBalancers get ipv6 addresses from fd00:61:<n>::/64
// and clients connect from fd00:63:<n>::<host>.
var ula = netip.MustParsePrefix("fd00::/8")

// newEnv6 starts a nodebalancer whose frontend pool has an IPv6 network beside the
// IPv4 one.
func newEnv6(t *testing.T) *env {
	return newEnv(t, func(c *server.Config) {
		n := c.FrontendPool[0].Addr().As4()[2] // the test's network number
		c.FrontendPool = append(c.FrontendPool, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x61, 0, n}), 64))
	})
}

// client6 is the IPv6 address of client host h of this test.
func (e *env) client6(h byte) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x63, 0, e.n, 15: h})
}

// httpClient6 returns an HTTP client whose connections come from IPv6 client host h.
func (e *env) httpClient6(h byte) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(e.client6(h), 0))}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// headerBackend answers every request with the forwarding headers it got, as JSON.
func (e *env) headerBackend(host byte) netip.AddrPort {
	e.t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(e.backendIP(host), 0).String())
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"xff": r.Header.Get("X-Forwarded-For"), "real": r.Header.Get("X-Real-IP"), "fwd": r.Header.Get("Forwarded")})
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// proxyBackend reads the PROXY header of each connection and answers "source dst".
func (e *env) proxyBackend(host byte) netip.AddrPort {
	e.t.Helper()
	ln := testnet.ServeConns(e.t, netip.AddrPortFrom(e.backendIP(host), 0).String(), func(c net.Conn) {
		h, err := proxyproto.Read(bufio.NewReader(c))
		if err != nil {
			fmt.Fprintf(c, "error %v\n", err)
			return
		}
		fmt.Fprintf(c, "v%d %s %s\n", h.Version, h.Source, h.Dst)
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestIPv6ClientsThroughHeadersProxyProtocolAndFirewall(t *testing.T) {
	if !testnet.InNetNS(t, ula) {
		return
	}
	e := newEnv6(t)
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("dual-stack")})
	if err != nil {
		t.Fatal(err)
	}
	want6 := fmt.Sprintf("fd00:61:%x::1", e.n)
	if nb.IPv6 == nil || *nb.IPv6 != want6 {
		t.Fatalf("ipv6 %v, want %s", nb.IPv6, want6)
	}
	if got, err := e.lc.ListNodeBalancers(e.ctx, linodego.NewListOptions(0, `{"ipv6":"`+want6+`"}`)); err != nil || len(got) != 1 {
		t.Fatalf("filter by ipv6: %v %v", got, err)
	}
	v4, v6 := netip.MustParseAddr(*nb.IPv4), netip.MustParseAddr(*nb.IPv6)
	mkConfig := func(port int, proto linodego.ConfigProtocol, pp linodego.ConfigProxyProtocol, node netip.AddrPort) {
		t.Helper()
		cfg, err := e.lc.CreateNodeBalancerConfig(e.ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{Port: port, Protocol: proto, ProxyProtocol: pp})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.lc.CreateNodeBalancerNode(e.ctx, nb.ID, cfg.ID, linodego.NodeBalancerNodeCreateOptions{Address: node.String(), Label: "node"}); err != nil {
			t.Fatal(err)
		}
		// Served once the listener is open and the node, added after the config, is
		// in its snapshot: an http answer 200, a tcp node's first byte.
		for _, ip := range []netip.Addr{v4, v6} {
			front := netip.AddrPortFrom(ip, uint16(port))
			waitFor(t, modeChangeBound, "a node behind "+front.String(), func() bool {
				if proto == linodego.ProtocolHTTP {
					r, err := http.Get("http://" + front.String() + "/")
					if err != nil {
						return false
					}
					r.Body.Close()
					return r.StatusCode == 200
				}
				served, err := probe(netip.Addr{}, front)
				return err == nil && served
			})
		}
	}
	mkConfig(8080, linodego.ProtocolHTTP, "", e.headerBackend(1))
	mkConfig(8081, linodego.ProtocolTCP, linodego.ProxyProtocolV2, e.proxyBackend(2))
	mkConfig(8082, linodego.ProtocolTCP, linodego.ProxyProtocolV1, e.proxyBackend(3))

	// X-Forwarded-For, X-Real-IP and Forwarded name the v6 client.
	c2 := e.client6(2)
	resp, err := e.httpClient6(2).Get("http://" + netip.AddrPortFrom(v6, 8080).String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	var hdr map[string]string
	json.NewDecoder(resp.Body).Decode(&hdr)
	resp.Body.Close()
	if hdr["xff"] != c2.String() || hdr["real"] != c2.String() || hdr["fwd"] != `for="[`+c2.String()+`]";proto=http` {
		t.Fatalf("forwarding headers %v, want the client %s", hdr, c2)
	}
	// The same config answers on the ipv4 address.
	resp, err = e.httpClient(4, false).Get("http://" + netip.AddrPortFrom(v4, 8080).String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&hdr)
	resp.Body.Close()
	if hdr["xff"] != e.clientIP(4).String() {
		t.Fatalf("ipv4 client: %v", hdr)
	}

	// PROXY v2 and v1 carry the v6 client and the v6 frontend.
	for _, c := range []struct {
		port uint16
		want string
	}{{8081, "v2"}, {8082, "v1"}} {
		line := proxyLine(t, c2, netip.AddrPortFrom(v6, c.port))
		var ver, src, dst string
		fmt.Sscan(line, &ver, &src, &dst)
		s, err1 := netip.ParseAddrPort(src)
		d, err2 := netip.ParseAddrPort(dst)
		if err1 != nil || err2 != nil || ver != c.want || s.Addr() != c2 || d != netip.AddrPortFrom(v6, c.port) {
			t.Fatalf("PROXY %s: %q, want source %s and destination %s", c.want, line, c2, netip.AddrPortFrom(v6, c.port))
		}
	}

	// Firewall rules match v6 clients by address and port; v4 rules do not touch them.
	c3, c4 := e.client6(3), e.client6(4)
	_, err = e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "v6-rules",
		Rules: linodego.FirewallRuleSet{InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT", Inbound: []linodego.FirewallRule{
			rule("DROP", "deny-v6-3", "", host(c3)),
			rule("DROP", "deny-v6-4-tcp", "8081", host(c4)),
			rule("DROP", "deny-v4-all", "", netip.MustParsePrefix("0.0.0.0/0")),
		}},
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{nb.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	web, tcp := netip.AddrPortFrom(v6, 8080), netip.AddrPortFrom(v6, 8081)
	untilProbe(t, c3, web, false)
	mustProbe(t, c3, tcp, false)
	mustProbe(t, c4, web, true)
	mustProbe(t, c4, tcp, false)
	mustProbe(t, c2, web, true)
	if line := proxyLine(t, c2, tcp); line == "" {
		t.Fatal("an allowed v6 client got nothing through the tcp config")
	}
	mustProbe(t, e.clientIP(5), netip.AddrPortFrom(v4, 8080), false)
	if n := e.droppedMetric(nb.ID, "deny-v6-3"); n < 2 {
		t.Fatalf("drops of deny-v6-3: %d", n)
	}
}

// proxyLine opens a connection from src to front and returns the line the PROXY
// backend answers.
func proxyLine(t *testing.T, src netip.Addr, front netip.AddrPort) string {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	c, err := d.Dial("tcp", front.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("%s → %s: %v", src, front, err)
	}
	return line
}

func TestIPv6ClientsThrottleStickinessAndSourceHashing(t *testing.T) {
	if !testnet.InNetNS(t, ula) {
		return
	}
	e := newEnv6(t)
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local", ClientConnThrottle: ptr(2)})
	if err != nil {
		t.Fatal(err)
	}
	v6 := netip.MustParseAddr(*nb.IPv6)
	a, b := e.httpBackend("a", 1), e.httpBackend("b", 2)
	for _, c := range []linodego.NodeBalancerConfigCreateOptions{
		{Port: 8080, Stickiness: linodego.StickinessTable},
		{Port: 8081, Algorithm: linodego.AlgorithmSource},
	} {
		cfg, err := e.lc.CreateNodeBalancerConfig(e.ctx, nb.ID, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, be := range []*httpBackend{a, b} {
			if _, err := e.lc.CreateNodeBalancerNode(e.ctx, nb.ID, cfg.ID, linodego.NodeBalancerNodeCreateOptions{
				Address: be.addr.String(), Label: "node-" + be.name}); err != nil {
				t.Fatal(err)
			}
		}
	}
	url := func(port int) string { return "http://" + netip.AddrPortFrom(v6, uint16(port)).String() + "/" }
	waitFor(t, modeChangeBound, "the v6 listeners", func() bool {
		served, _ := probe(e.client6(9), netip.AddrPortFrom(v6, 8081))
		return served
	})
	time.Sleep(1100 * time.Millisecond) // the readiness probes' throttle window passes

	// The throttle counts per v6 client: a third connection within a second is
	// refused for client 2, while client 3 still gets in.
	front := netip.AddrPortFrom(v6, 8080)
	mustProbe(t, e.client6(2), front, true)
	mustProbe(t, e.client6(2), front, true)
	mustProbe(t, e.client6(2), front, false)
	mustProbe(t, e.client6(3), front, true)
	time.Sleep(1100 * time.Millisecond)

	// Table stickiness and source hashing keep each v6 client on one node, and spread
	// different clients.
	for _, c := range []struct {
		name    string
		port    int
		clients byte // the first of 20 clients, none used before (each may open 2 connections a second)
	}{{"table", 8080, 10}, {"source", 8081, 40}} {
		name, port := c.name, c.port
		seen := map[string]bool{}
		for h := c.clients; h < c.clients+20; h++ {
			var first string
			for i := range 2 {
				r := mustGet(t, e.httpClient6(h), url(port), "")
				if i == 0 {
					first = r.node
				} else if r.node != first {
					t.Fatalf("%s: client %s moved from %s to %s", name, e.client6(h), first, r.node)
				}
			}
			seen[first] = true
		}
		if name == "source" && len(seen) != 2 {
			t.Fatalf("source hashing sent 20 v6 clients to %v", seen)
		}
	}
}

// TestIPv6UDPConfigAnswersOnBothAddresses: a udp config listens on its NodeBalancer's
// ipv4 and ipv6, and a v6 client's session is answered from the v6 frontend.
func TestIPv6UDPConfigAnswersOnBothAddresses(t *testing.T) {
	if !testnet.InNetNS(t, ula) {
		return
	}
	e := newEnv6(t)
	echo := testnet.ServeUDPEcho(t, "echo", netip.AddrPortFrom(e.backendIP(1), udpPort).String())
	nb, err := e.lc.CreateNodeBalancer(e.ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil || nb.IPv6 == nil {
		t.Fatalf("create: %+v %v", nb, err)
	}
	cfg, err := e.lc.CreateNodeBalancerConfig(e.ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{Port: 5353, Protocol: linodego.ProtocolUDP})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.lc.CreateNodeBalancerNode(e.ctx, nb.ID, cfg.ID, linodego.NodeBalancerNodeCreateOptions{Address: echo.Addr().String(), Label: "echo"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src   netip.Addr
		front netip.AddrPort
	}{
		{e.clientIP(1), netip.AddrPortFrom(netip.MustParseAddr(*nb.IPv4), 5353)},
		{e.client6(1), netip.AddrPortFrom(netip.MustParseAddr(*nb.IPv6), 5353)},
	} {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.src, 0)))
		if err != nil {
			t.Fatal(err)
		}
		u := &udpClient{c: conn, buf: make([]byte, 1<<16)}
		waitFor(t, modeChangeBound, "a udp answer from "+c.front.String(), func() bool {
			got, err := u.ask(c.front, "who?", 100*time.Millisecond)
			return err == nil && got == "echo"
		})
		conn.Close()
	}
}
