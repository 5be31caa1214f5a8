package dataplane

import (
	"fmt"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// A firewall at Linode's limits (25 rules of 10 networks) whose last rule accepts
// the benchmark's client, and a disabled one.
func init() {
	rules := model.FirewallRules{InboundPolicy: model.ActionDrop, OutboundPolicy: model.ActionAccept}
	for i := range 24 {
		var a4, a6 []string
		for j := range 5 {
			a4 = append(a4, fmt.Sprintf("10.%d.%d.0/24", i, j))
			a6 = append(a6, fmt.Sprintf("fd00:%x:%x::/48", i, j))
		}
		rules.Inbound = append(rules.Inbound, model.FirewallRule{Action: model.ActionDrop, Protocol: model.RuleTCP,
			Ports: "22, 8000-8100", Addresses: model.FirewallAddresses{IPv4: a4, IPv6: a6}})
	}
	rules.Inbound = append(rules.Inbound, model.FirewallRule{Action: model.ActionAccept, Protocol: model.RuleTCP,
		Addresses: model.FirewallAddresses{IPv4: []string{"127.93.0.0/16"}}})
	attach := func(status model.FirewallStatus) func(b *testing.B, db *store.DB, nbID int) {
		return func(b *testing.B, db *store.DB, nbID int) {
			if es := model.ValidateFirewallRules(&rules); len(es) > 0 {
				b.Fatal(es)
			}
			if _, err := db.CreateFirewall(model.Firewall{Label: "bench-" + string(status), Status: status, Rules: rules}, []int{nbID}); err != nil {
				b.Fatal(err)
			}
		}
	}
	acceptBenchCases = append(acceptBenchCases,
		struct {
			name  string
			setup func(b *testing.B, db *store.DB, nbID int)
		}{"firewall-25-rules", attach(model.FirewallEnabled)},
		struct {
			name  string
			setup func(b *testing.B, db *store.DB, nbID int)
		}{"firewall-disabled", attach(model.FirewallDisabled)})
}
