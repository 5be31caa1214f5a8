package e2e

import (
	"testing"
	"time"

	"github.com/linode/linodego"
)

// TestFirewallDropsUDPSessions: the udp path asks the NodeBalancer's firewall once per
// new session; a dropped client gets no session and no answer, an allowed one does,
// and an enabled firewall's drops are counted by rule.
func TestFirewallDropsUDPSessions(t *testing.T) {
	e := udpEnv(t, time.Minute)
	a := e.udpNode("a", 1, 0)
	l := e.udpBalancer(0, linodego.NodeBalancerConfigCreateOptions{}, a.spec(1, ""))
	deny := rule("DROP", "deny-udp-2", "5353", host(e.clientIP(2)))
	deny.Protocol = linodego.UDP
	tcpOnly := rule("DROP", "tcp-only-3", "", host(e.clientIP(3))) // a TCP rule does not match udp
	_, err := e.lc.CreateFirewall(e.ctx, linodego.FirewallCreateOptions{Label: "udp-guard",
		Rules:   linodego.FirewallRuleSet{InboundPolicy: "ACCEPT", OutboundPolicy: "ACCEPT", Inbound: []linodego.FirewallRule{deny, tcpOnly}},
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{l.nbID}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, modeChangeBound, "client 2's udp sessions to be dropped", func() bool {
		_, err := e.udpClient(2).ask(l.front, "hi", 100*time.Millisecond)
		return err != nil
	})
	for range 3 {
		if _, err := e.udpClient(2).ask(l.front, "hi", 200*time.Millisecond); err == nil {
			t.Fatal("a client the firewall drops got an answer")
		}
	}
	if got := e.udpClient(3).who(t, l.front); got != "a" {
		t.Fatalf("client 3 (a TCP rule names it) answered by %q", got)
	}
	if got := e.udpClient(1).who(t, l.front); got != "a" {
		t.Fatalf("client 1 answered by %q", got)
	}
	if n := e.droppedMetric(l.nbID, "deny-udp-2"); n < 3 {
		t.Fatalf("drops of deny-udp-2: %d", n)
	}
}
