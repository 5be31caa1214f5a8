package api

import (
	"context"
	"strings"
	"testing"

	"github.com/linode/linodego"
)

// TestLinodegoUDPConfigs: udp configs through the real client — their algorithms and
// stickiness kinds, the refusals that name the field, and the port rule Linode's own
// console enforces: unique among tcp/http/https configs and among udp configs, so a
// udp config may share a tcp config's port number.
func TestLinodegoUDPConfigs(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", ClientUDPSessThrottle: ptr(3),
		Configs: []*linodego.NodeBalancerConfigCreateOptions{
			{Port: 53, Protocol: "tcp"},
			{Port: 53, Protocol: "udp", Algorithm: "ring_hash", Stickiness: "source_ip", Check: "connection", UDPCheckPort: ptr(8053)},
		}})
	if err != nil {
		t.Fatalf("create with tcp and udp on port 53: %v", err)
	}
	cfgs, err := lc.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	if err != nil || len(cfgs) != 2 {
		t.Fatalf("configs: %+v, %v", cfgs, err)
	}
	udp := cfgs[1]
	if udp.Protocol != "udp" || udp.Algorithm != "ring_hash" || udp.Stickiness != "source_ip" || udp.UDPCheckPort != 8053 || udp.UDPSessionTimeout != 2 {
		t.Fatalf("udp config read back as %+v", udp)
	}
	for _, c := range []struct {
		name  string
		opts  linodego.NodeBalancerConfigCreateOptions
		field string
		why   string
	}{
		{"second udp on 53", linodego.NodeBalancerConfigCreateOptions{Port: 53, Protocol: "udp"}, "port", "unique among its udp configs"},
		{"http on tcp's 53", linodego.NodeBalancerConfigCreateOptions{Port: 53, Protocol: "http"}, "port", "unique among its tcp, http and https configs"},
		{"udp source", linodego.NodeBalancerConfigCreateOptions{Port: 54, Protocol: "udp", Algorithm: "source"}, "algorithm", "not available with protocol udp"},
		{"udp table", linodego.NodeBalancerConfigCreateOptions{Port: 54, Protocol: "udp", Stickiness: "table"}, "stickiness", "not available with protocol udp"},
		{"udp http_cookie", linodego.NodeBalancerConfigCreateOptions{Port: 54, Protocol: "udp", Stickiness: "http_cookie"}, "stickiness", "requires protocol http or https"},
		{"tcp ring_hash", linodego.NodeBalancerConfigCreateOptions{Port: 54, Protocol: "tcp", Algorithm: "ring_hash"}, "algorithm", "requires protocol udp"},
		{"http session", linodego.NodeBalancerConfigCreateOptions{Port: 54, Protocol: "http", Stickiness: "session"}, "stickiness", "requires protocol udp"},
		{"udp proxy protocol", linodego.NodeBalancerConfigCreateOptions{Port: 54, Protocol: "udp", ProxyProtocol: "v2"}, "proxy_protocol", "requires protocol tcp"},
	} {
		_, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, c.opts)
		if status(err) != 400 || !strings.Contains(err.Error(), c.why) || !strings.Contains(err.Error(), "["+c.field+"]") {
			t.Errorf("%s: %v, want a 400 on %s saying %q", c.name, err, c.field, c.why)
		}
	}
	// Moving the udp config to tcp while sending ring_hash is refused; left out, ring_hash
	// and source_ip would fall back to tcp's defaults, but port 53 is the tcp config's.
	// Either way nothing changes.
	if _, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, udp.ID, linodego.NodeBalancerConfigUpdateOptions{Port: 53, Protocol: "tcp", Algorithm: "ring_hash"}); status(err) != 400 ||
		!strings.Contains(err.Error(), "[algorithm]") {
		t.Errorf("udp→tcp sending ring_hash: %v", err)
	}
	if _, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, udp.ID, linodego.NodeBalancerConfigUpdateOptions{Port: 53, Protocol: "tcp"}); status(err) != 400 ||
		!strings.Contains(err.Error(), "[port]") {
		t.Errorf("udp→tcp on the tcp config's port: %v", err)
	}
	if got, _ := lc.GetNodeBalancerConfig(ctx, nb.ID, udp.ID); got.Protocol != "udp" || got.Algorithm != "ring_hash" || got.Port != 53 {
		t.Errorf("after a refused update: %+v", got)
	}
	// Leaving them out, the udp-only values fall back to the defaults (model.FitProtocol).
	moved, err := lc.UpdateNodeBalancerConfig(ctx, nb.ID, udp.ID, linodego.NodeBalancerConfigUpdateOptions{Port: 55, Protocol: "tcp"})
	if err != nil || moved.Protocol != "tcp" || moved.Algorithm != "roundrobin" || moved.Stickiness != "none" {
		t.Errorf("udp→tcp leaving algorithm and stickiness out: %+v, %v", moved, err)
	}
	// Each udp algorithm and stickiness is accepted.
	port := 60
	for _, algo := range []linodego.ConfigAlgorithm{"roundrobin", "leastconn", "ring_hash"} {
		for _, st := range []linodego.ConfigStickiness{"none", "session", "source_ip"} {
			if _, err := lc.CreateNodeBalancerConfig(ctx, nb.ID, linodego.NodeBalancerConfigCreateOptions{
				Port: port, Protocol: "udp", Algorithm: algo, Stickiness: st}); err != nil {
				t.Errorf("udp %s %s: %v", algo, st, err)
			}
			port++
		}
	}
}
