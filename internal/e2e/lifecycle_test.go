package e2e

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/linode/linodego"
)

// refused reports whether a connection to addr is refused (nothing listens).
func refused(addr netip.AddrPort) bool {
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// TestDeleteClosesListeners: deleting a config closes its port at once (its sibling
// keeps serving) and frees it for a new config; deleting the NodeBalancer closes every
// port it had.
func TestDeleteClosesListeners(t *testing.T) {
	e := newEnv(t)
	l := e.balancer(linodego.NodeBalancerConfigCreateOptions{Port: 8081, Protocol: linodego.ProtocolTCP},
		nodeSpec{name: "t", addr: e.backend(linodego.ProtocolTCP, "t", 1)})
	h := e.httpBackend("h", 2)
	cfg2, err := e.lc.CreateNodeBalancerConfig(e.ctx, l.nbID, linodego.NodeBalancerConfigCreateOptions{Port: 8082, Protocol: linodego.ProtocolHTTP})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.lc.CreateNodeBalancerNode(e.ctx, l.nbID, cfg2.ID, linodego.NodeBalancerNodeCreateOptions{Address: h.addr.String(), Label: "node-h"}); err != nil {
		t.Fatal(err)
	}
	tcpFront := l.front
	httpFront := netip.AddrPortFrom(l.front.Addr(), 8082)
	c := e.httpClient(0, false)
	httpURL := "http://" + httpFront.String() + "/"
	if n, err := e.tcpNode(tcpFront, 0); err != nil || n != "t" {
		t.Fatalf("tcp config: %q, %v", n, err)
	}
	waitFor(t, modeChangeBound, "the http config to serve", func() bool {
		r, err := get(c, httpURL, "")
		return err == nil && r.node == "h"
	})

	if err := e.lc.DeleteNodeBalancerConfig(e.ctx, l.nbID, l.cfgID); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, modeChangeBound, "port 8081 to close after its config was deleted", func() bool { return refused(tcpFront) })
	if r := mustGet(t, c, httpURL, ""); r.node != "h" {
		t.Fatalf("the sibling config answered from %q after the other was deleted", r.node)
	}
	t.Logf("config delete closed its port within %v", took)

	// The freed port takes a new config, of another protocol.
	cfg3, err := e.lc.CreateNodeBalancerConfig(e.ctx, l.nbID, linodego.NodeBalancerConfigCreateOptions{Port: 8081, Protocol: linodego.ProtocolHTTP})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.lc.CreateNodeBalancerNode(e.ctx, l.nbID, cfg3.ID, linodego.NodeBalancerNodeCreateOptions{Address: h.addr.String(), Label: "node-h2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, modeChangeBound, "a new config to serve on the freed port", func() bool {
		r, err := get(c, "http://"+tcpFront.String()+"/", "")
		return err == nil && r.node == "h"
	})

	if err := e.lc.DeleteNodeBalancer(e.ctx, l.nbID); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, modeChangeBound, "every port to close after the NodeBalancer was deleted", func() bool {
		return refused(tcpFront) && refused(httpFront)
	})
	t.Logf("NodeBalancer delete closed its ports within %v", took)
}
