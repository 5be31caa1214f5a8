package api

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linode/linodego"
)

func addrs(v4, v6 []string) linodego.NetworkAddresses {
	a := linodego.NetworkAddresses{}
	if v4 != nil {
		a.IPv4 = &v4
	}
	if v6 != nil {
		a.IPv6 = &v6
	}
	return a
}

// fieldRE finds the fields in a linodego error message: "[field] reason; [field] reason".
var fieldRE = regexp.MustCompile(`(?:^|; )\[(\S*)\] `)

// fieldsOf returns the fields a linodego error names, sorted.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	le, ok := err.(*linodego.Error)
	if !ok || le.Code != 400 {
		t.Fatalf("want a 400, got %v", err)
	}
	var out []string
	for _, m := range fieldRE.FindAllStringSubmatch(le.Message, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

func TestLinodegoFirewallCRUD(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Label: ptr("guarded"), Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	rules := linodego.FirewallRuleSet{
		InboundPolicy: "DROP", OutboundPolicy: "ACCEPT",
		Inbound: []linodego.FirewallRule{
			{Action: "ACCEPT", Label: "allow-web", Description: "web from the office", Protocol: linodego.TCP,
				Ports: "80, 443, 8000-8100", Addresses: addrs([]string{"192.0.2.0/24"}, []string{"2001:db8::/32"})},
			{Action: "DROP", Label: "drop-ping", Protocol: linodego.ICMP, Addresses: addrs([]string{"0.0.0.0/0"}, nil)},
		},
	}
	fw, err := lc.CreateFirewall(ctx, linodego.FirewallCreateOptions{Label: "office-only", Rules: rules, Tags: []string{"prod"},
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{nb.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if fw.ID == 0 || fw.Label != "office-only" || fw.Status != linodego.FirewallEnabled || !slices.Equal(fw.Tags, []string{"prod"}) ||
		fw.Created == nil || time.Since(*fw.Created) > time.Minute {
		t.Fatalf("created %+v", fw)
	}
	if fw.Rules.Version != 1 || len(fw.Rules.Fingerprint) != 8 || len(fw.Rules.Inbound) != 2 || fw.Rules.InboundPolicy != "DROP" ||
		fw.Rules.Inbound[0].Ports != "80, 443, 8000-8100" || *fw.Rules.Inbound[0].Addresses.IPv6 != nil && (*fw.Rules.Inbound[0].Addresses.IPv6)[0] != "2001:db8::/32" ||
		fw.Rules.Inbound[1].Addresses.IPv6 != nil || fw.Rules.Outbound == nil {
		t.Fatalf("rules %+v", fw.Rules)
	}
	if len(fw.Entities) != 1 || fw.Entities[0].ID != nb.ID || fw.Entities[0].Type != "nodebalancer" || fw.Entities[0].Label != "guarded" ||
		fw.Entities[0].URL != fmt.Sprintf("/v4/nodebalancers/%d", nb.ID) {
		t.Fatalf("entities %+v", fw.Entities)
	}

	got, err := lc.GetFirewall(ctx, fw.ID)
	if err != nil || got.Label != fw.Label || got.Rules.Fingerprint != fw.Rules.Fingerprint {
		t.Fatalf("get %+v %v", got, err)
	}
	list, err := lc.ListFirewalls(ctx, linodego.NewListOptions(0, `{"label":"office-only"}`))
	if err != nil || len(list) != 1 || list[0].ID != fw.ID {
		t.Fatalf("list %+v %v", list, err)
	}
	if list, err := lc.ListFirewalls(ctx, linodego.NewListOptions(0, `{"tags":"nope"}`)); err != nil || len(list) != 0 {
		t.Fatalf("filtered list %+v %v", list, err)
	}
	nbfw, err := lc.ListNodeBalancerFirewalls(ctx, nb.ID, nil)
	if err != nil || len(nbfw) != 1 || nbfw[0].ID != fw.ID || len(nbfw[0].Rules.Inbound) != 2 {
		t.Fatalf("NodeBalancer firewalls %+v %v", nbfw, err)
	}

	// Update: label, status, tags.
	up, err := lc.UpdateFirewall(ctx, fw.ID, linodego.FirewallUpdateOptions{Label: "office.v2", Status: linodego.FirewallDisabled, Tags: &[]string{}})
	if err != nil || up.Label != "office.v2" || up.Status != linodego.FirewallDisabled || len(up.Tags) != 0 || up.Rules.Version != 1 {
		t.Fatalf("update %+v %v", up, err)
	}

	// Rules: replace, version advances, fingerprint changes.
	rules.Inbound = rules.Inbound[:1]
	rules.InboundPolicy = "ACCEPT"
	rs, err := lc.UpdateFirewallRules(ctx, fw.ID, rules)
	if err != nil || rs.Version != 2 || rs.Fingerprint == fw.Rules.Fingerprint || len(rs.Inbound) != 1 || rs.InboundPolicy != "ACCEPT" {
		t.Fatalf("rules update %+v %v", rs, err)
	}
	if rs, err := lc.GetFirewallRules(ctx, fw.ID); err != nil || rs.Version != 2 || len(rs.Inbound) != 1 {
		t.Fatalf("rules get %+v %v", rs, err)
	}
	// A policy left empty keeps the stored one; rule lists left out empty the rules.
	rs, err = lc.UpdateFirewallRules(ctx, fw.ID, linodego.FirewallRuleSet{})
	if err != nil || rs.InboundPolicy != "ACCEPT" || rs.OutboundPolicy != "ACCEPT" || len(rs.Inbound) != 0 || rs.Version != 3 {
		t.Fatalf("empty rules update %+v %v", rs, err)
	}

	// Devices: list, get, delete, re-create; NodeBalancer firewall_id on create.
	devs, err := lc.ListFirewallDevices(ctx, fw.ID, nil)
	if err != nil || len(devs) != 1 || devs[0].Entity.ID != nb.ID || devs[0].Entity.Type != linodego.FirewallDeviceNodeBalancer {
		t.Fatalf("devices %+v %v", devs, err)
	}
	if d, err := lc.GetFirewallDevice(ctx, fw.ID, devs[0].ID); err != nil || d.Entity.Label != "guarded" || d.Created == nil {
		t.Fatalf("device %+v %v", d, err)
	}
	if err := lc.DeleteFirewallDevice(ctx, fw.ID, devs[0].ID); err != nil {
		t.Fatal(err)
	}
	if nbfw, err := lc.ListNodeBalancerFirewalls(ctx, nb.ID, nil); err != nil || len(nbfw) != 0 {
		t.Fatalf("after detach %+v %v", nbfw, err)
	}
	d, err := lc.CreateFirewallDevice(ctx, fw.ID, linodego.FirewallDeviceCreateOptions{ID: nb.ID, Type: linodego.FirewallDeviceNodeBalancer})
	if err != nil || d.Entity.ID != nb.ID {
		t.Fatalf("attach %+v %v", d, err)
	}
	nb2, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", FirewallID: fw.ID})
	if err != nil {
		t.Fatal(err)
	}
	if nbfw, err := lc.ListNodeBalancerFirewalls(ctx, nb2.ID, nil); err != nil || len(nbfw) != 1 || nbfw[0].ID != fw.ID {
		t.Fatalf("firewall_id on create: %+v %v", nbfw, err)
	}
	if got, _ := lc.GetFirewall(ctx, fw.ID); len(got.Entities) != 2 {
		t.Fatalf("entities %+v", got.Entities)
	}

	// Deleting a NodeBalancer detaches it; deleting the firewall frees the rest.
	if err := lc.DeleteNodeBalancer(ctx, nb2.ID); err != nil {
		t.Fatal(err)
	}
	if devs, _ := lc.ListFirewallDevices(ctx, fw.ID, nil); len(devs) != 1 {
		t.Fatalf("devices after the NodeBalancer's deletion: %+v", devs)
	}
	if err := lc.DeleteFirewall(ctx, fw.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.GetFirewall(ctx, fw.ID); status(err) != 404 {
		t.Fatalf("deleted firewall: %v", err)
	}
	if nbfw, err := lc.ListNodeBalancerFirewalls(ctx, nb.ID, nil); err != nil || len(nbfw) != 0 {
		t.Fatalf("after the firewall's deletion %+v %v", nbfw, err)
	}
}

// TestLinodegoFirewallBadInput sends every kind of bad firewall input linodego can
// express and checks the 400 names the field and nothing changed.
func TestLinodegoFirewallBadInput(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	ok := linodego.FirewallRule{Action: "ACCEPT", Protocol: linodego.TCP, Ports: "80", Addresses: addrs([]string{"192.0.2.0/24"}, nil)}
	base := linodego.FirewallRuleSet{InboundPolicy: "DROP", OutboundPolicy: "ACCEPT", Inbound: []linodego.FirewallRule{ok}}
	fw, err := lc.CreateFirewall(ctx, linodego.FirewallCreateOptions{Label: "taken", Rules: base,
		Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{nb.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := lc.CreateFirewall(ctx, linodego.FirewallCreateOptions{Label: "other", Rules: base})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(mut func(*linodego.FirewallRule)) linodego.FirewallRuleSet {
		r := ok
		mut(&r)
		rs := base
		rs.Inbound = []linodego.FirewallRule{r}
		return rs
	}
	many := make([]string, 256)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.%d.0/24", i)
	}
	tooManyRules := base
	for range 25 {
		tooManyRules.Inbound = append(tooManyRules.Inbound, ok)
	}
	bad := []struct {
		name   string
		rules  linodego.FirewallRuleSet
		fields []string
		reason string
	}{
		{"no policies", linodego.FirewallRuleSet{}, []string{"inbound_policy", "outbound_policy"}, "required"},
		{"bad policy", rule(func(*linodego.FirewallRule) {}), nil, ""}, // placeholder replaced below
		{"bad action", rule(func(r *linodego.FirewallRule) { r.Action = "REJECT" }), []string{"inbound[0].action"}, "ACCEPT, DROP"},
		{"no action", rule(func(r *linodego.FirewallRule) { r.Action = "" }), []string{"inbound[0].action"}, "required"},
		{"bad protocol", rule(func(r *linodego.FirewallRule) { r.Protocol = "SCTP" }), []string{"inbound[0].protocol"}, "TCP, UDP, ICMP, IPENCAP"},
		{"ports on ICMP", rule(func(r *linodego.FirewallRule) { r.Protocol = linodego.ICMP }), []string{"inbound[0].ports"}, "only allowed"},
		{"leading zero", rule(func(r *linodego.FirewallRule) { r.Ports = "080" }), []string{"inbound[0].ports"}, "leading zeros"},
		{"port 0", rule(func(r *linodego.FirewallRule) { r.Ports = "0" }), []string{"inbound[0].ports"}, "1-65535"},
		{"port too big", rule(func(r *linodego.FirewallRule) { r.Ports = "65536" }), []string{"inbound[0].ports"}, "1-65535"},
		{"backwards range", rule(func(r *linodego.FirewallRule) { r.Ports = "90-80" }), []string{"inbound[0].ports"}, "end above"},
		{"too many pieces", rule(func(r *linodego.FirewallRule) { r.Ports = "1-2, 3-4, 5-6, 7-8, 9-10, 11-12, 13-14, 15-16" }), []string{"inbound[0].ports"}, "at most 15"},
		{"no addresses", rule(func(r *linodego.FirewallRule) { r.Addresses = linodego.NetworkAddresses{} }), []string{"inbound[0].addresses"}, "ipv4, ipv6 or both"},
		{"empty ipv4", rule(func(r *linodego.FirewallRule) { r.Addresses = addrs([]string{}, nil) }), []string{"inbound[0].addresses.ipv4"}, "empty"},
		{"not a network", rule(func(r *linodego.FirewallRule) { r.Addresses = addrs([]string{"192.0.2.1"}, nil) }), []string{"inbound[0].addresses.ipv4[0]"}, "IP/mask"},
		{"v6 in ipv4", rule(func(r *linodego.FirewallRule) { r.Addresses = addrs([]string{"::/0"}, nil) }), []string{"inbound[0].addresses.ipv4[0]"}, "IPv4"},
		{"v4 in ipv6", rule(func(r *linodego.FirewallRule) { r.Addresses = addrs(nil, []string{"10.0.0.0/8"}) }), []string{"inbound[0].addresses.ipv6[0]"}, "IPv6"},
		{"zone", rule(func(r *linodego.FirewallRule) { r.Addresses = addrs(nil, []string{"fe80::1%eth0/64"}) }), []string{"inbound[0].addresses.ipv6[0]"}, "zone"},
		{"256 addresses", rule(func(r *linodego.FirewallRule) { r.Addresses = addrs(many, nil) }), []string{"inbound[0].addresses"}, "at most 255"},
		{"short rule label", rule(func(r *linodego.FirewallRule) { r.Label = "ab" }), []string{"inbound[0].label"}, "3-32"},
		{"long description", rule(func(r *linodego.FirewallRule) { r.Description = strings.Repeat("x", 101) }), []string{"inbound[0].description"}, "1-100"},
		{"26 rules", tooManyRules, []string{"inbound"}, "at most 25"},
		{"ruleset reference", rule(func(r *linodego.FirewallRule) { r.RuleSet = 4 }), []string{"inbound[0].ruleset"}, "not supported"},
	}
	bad[1].rules = base
	bad[1].rules.InboundPolicy = "REJECT"
	bad[1].fields, bad[1].reason = []string{"inbound_policy"}, "ACCEPT, DROP"

	check := func(name string, err error, fields []string, reason string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: accepted", name)
			return
		}
		got := fieldsOf(t, err)
		want := slices.Clone(fields)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: fields %q, want %q (%v)", name, got, want, err)
		}
		if !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v does not say %q", name, err, reason)
		}
	}
	before := e.snapshot()
	for _, b := range bad {
		// Through the rules endpoint the fields are relative to the rule set…
		if b.name != "no policies" { // …where an empty policy keeps the stored one (below)
			_, err := lc.UpdateFirewallRules(ctx, fw.ID, b.rules)
			check("rules "+b.name, err, b.fields, b.reason)
		}
		// …and through create they are under "rules".
		_, err = lc.CreateFirewall(ctx, linodego.FirewallCreateOptions{Label: "new-fw", Rules: b.rules})
		prefixed := make([]string, len(b.fields))
		for i, f := range b.fields {
			prefixed[i] = "rules." + f
		}
		check("create "+b.name, err, prefixed, b.reason)
	}
	_, err = lc.CreateFirewall(ctx, linodego.FirewallCreateOptions{Label: "new-fw"})
	check("create without policies", err, []string{"rules.inbound_policy", "rules.outbound_policy"}, "required")
	if after := e.snapshot(); after != before {
		t.Fatal("a refused rules request changed the store")
	}
	if rs, err := lc.UpdateFirewallRules(ctx, fw.ID, linodego.FirewallRuleSet{}); err != nil || rs.InboundPolicy != "DROP" {
		t.Fatalf("rules update without policies: %+v %v", rs, err)
	}
	before = e.snapshot()

	for _, c := range []struct {
		name   string
		opts   linodego.FirewallCreateOptions
		fields []string
		reason string
	}{
		{"label taken", linodego.FirewallCreateOptions{Label: "taken", Rules: base}, []string{"label"}, "already in use"},
		{"label missing", linodego.FirewallCreateOptions{Rules: base}, []string{"label"}, "required"},
		{"label short", linodego.FirewallCreateOptions{Label: "fw", Rules: base}, []string{"label"}, "3-32"},
		{"label doubled dash", linodego.FirewallCreateOptions{Label: "my--fw", Rules: base}, []string{"label"}, "in a row"},
		{"label ends with dot", linodego.FirewallCreateOptions{Label: "myfw.", Rules: base}, []string{"label"}, "begin and end"},
		{"bad tag", linodego.FirewallCreateOptions{Label: "tagged", Rules: base, Tags: []string{"x"}}, []string{"tags[0]"}, "characters"},
		{"linode device", linodego.FirewallCreateOptions{Label: "lin", Rules: base, Devices: linodego.DevicesCreationOptions{Linodes: []int{5}}},
			[]string{"devices.linodes"}, "not supported"},
		{"interface device", linodego.FirewallCreateOptions{Label: "lin", Rules: base, Devices: linodego.DevicesCreationOptions{LinodeInterfaces: []int{5}}},
			[]string{"devices.linode_interfaces"}, "not supported"},
		{"missing NodeBalancer", linodego.FirewallCreateOptions{Label: "ghost", Rules: base, Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{999}}},
			[]string{"devices.nodebalancers[0]"}, "does not exist"},
		{"guarded NodeBalancer", linodego.FirewallCreateOptions{Label: "second", Rules: base, Devices: linodego.DevicesCreationOptions{NodeBalancers: []int{nb.ID}}},
			[]string{"devices.nodebalancers[0]"}, "at most one firewall"},
	} {
		_, err := lc.CreateFirewall(ctx, c.opts)
		check("create "+c.name, err, c.fields, c.reason)
	}
	for _, c := range []struct {
		name   string
		opts   linodego.FirewallUpdateOptions
		fields []string
		reason string
	}{
		{"status deleted", linodego.FirewallUpdateOptions{Status: linodego.FirewallDeleted}, []string{"status"}, "enabled, disabled"},
		{"label taken", linodego.FirewallUpdateOptions{Label: "other"}, []string{"label"}, "already in use"},
		{"label bad", linodego.FirewallUpdateOptions{Label: "a b c"}, []string{"label"}, "only use"},
		{"tags bad", linodego.FirewallUpdateOptions{Tags: &[]string{"ok-tag", "ok-tag"}}, []string{"tags[1]"}, "twice"},
	} {
		_, err := lc.UpdateFirewall(ctx, fw.ID, c.opts)
		check("update "+c.name, err, c.fields, c.reason)
	}
	for _, c := range []struct {
		name   string
		opts   linodego.FirewallDeviceCreateOptions
		fields []string
		reason string
	}{
		{"linode", linodego.FirewallDeviceCreateOptions{ID: 5, Type: linodego.FirewallDeviceLinode}, []string{"type"}, "not supported"},
		{"linode_interface", linodego.FirewallDeviceCreateOptions{ID: 5, Type: linodego.FirewallDeviceLinodeInterface}, []string{"type"}, "not supported"},
		{"no type", linodego.FirewallDeviceCreateOptions{ID: nb.ID}, []string{"type"}, "required"},
		{"no id", linodego.FirewallDeviceCreateOptions{Type: linodego.FirewallDeviceNodeBalancer}, []string{"id"}, "positive"},
		{"missing NodeBalancer", linodego.FirewallDeviceCreateOptions{ID: 999, Type: linodego.FirewallDeviceNodeBalancer}, []string{"id"}, "does not exist"},
		{"second firewall", linodego.FirewallDeviceCreateOptions{ID: nb.ID, Type: linodego.FirewallDeviceNodeBalancer}, []string{"id"}, "at most one firewall"},
	} {
		_, err := lc.CreateFirewallDevice(ctx, other.ID, c.opts)
		check("device "+c.name, err, c.fields, c.reason)
	}
	_, err = lc.CreateFirewallDevice(ctx, fw.ID, linodego.FirewallDeviceCreateOptions{ID: nb.ID, Type: linodego.FirewallDeviceNodeBalancer})
	check("device twice", err, []string{"id"}, "already a device")
	_, err = lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", FirewallID: 999})
	check("NodeBalancer with a missing firewall", err, []string{"firewall_id"}, "does not exist")
	if after := e.snapshot(); after != before {
		t.Fatal("a refused request changed the store")
	}
	for _, path := range []string{"/v4/networking/firewalls/999", "/v4/networking/firewalls/999/rules", "/v4/networking/firewalls/999/devices",
		fmt.Sprintf("/v4/networking/firewalls/%d/devices/999", fw.ID), "/v4/nodebalancers/999/firewalls"} {
		if r := e.do("GET", path, ""); r.status != 404 {
			t.Errorf("GET %s = %d", path, r.status)
		}
	}
}

// TestFirewallRawBadInput covers what linodego cannot send: wrong JSON types.
func TestFirewallRawBadInput(t *testing.T) {
	e := newEnv(t)
	fw := e.must("POST", "/v4/networking/firewalls", `{"label":"raw-fw","rules":{"inbound_policy":"DROP","outbound_policy":"ACCEPT"}}`)
	fwPath := fmt.Sprintf("/v4/networking/firewalls/%v", fw["id"])
	for _, c := range []struct {
		method, path, body string
		fields             []string
		reason             string
	}{
		{"POST", "/v4/networking/firewalls", `{"label":"a-fw","rules":5}`, []string{"rules"}, "JSON object"},
		{"POST", "/v4/networking/firewalls", `{"label":"a-fw","rules":{"inbound_policy":"DROP","outbound_policy":"DROP","inbound":[{"action":"DROP","protocol":"TCP","addresses":{"ipv4":"10.0.0.0/8"}}]}}`,
			[]string{"rules.inbound[0].addresses.ipv4"}, "list of strings"},
		{"POST", "/v4/networking/firewalls", `{"label":"a-fw","rules":{"inbound_policy":"DROP","outbound_policy":"DROP","inbound":[7]}}`,
			[]string{"rules.inbound[0]"}, "JSON object"},
		{"POST", "/v4/networking/firewalls", `{"label":"a-fw","rules":{"inbound_policy":"DROP","outbound_policy":"DROP"},"devices":{"nodebalancers":["x"]}}`,
			[]string{"devices.nodebalancers[0]"}, "positive integer"},
		{"PUT", fwPath + "/rules", `{"inbound":[{"action":"DROP","protocol":"TCP","ports":80,"addresses":{"ipv4":["10.0.0.0/8"]}}]}`,
			[]string{"inbound[0].ports"}, "string"},
		{"PUT", fwPath, `{"status":true}`, []string{"status"}, "string"},
		{"PUT", fwPath, `{"status":""}`, []string{"status"}, "enabled, disabled"},
		{"PUT", fwPath, `{"label":""}`, []string{"label"}, "3-32"},
		{"POST", fwPath + "/devices", `{"id":"1","type":"nodebalancer"}`, []string{"id"}, "integer"},
	} {
		before := e.snapshot()
		r := e.do(c.method, c.path, c.body)
		if r.status != 400 {
			t.Errorf("%s %s %s = %d %s", c.method, c.path, c.body, r.status, r.body)
			continue
		}
		var fields []string
		found := false
		for f, reason := range r.errs(t) {
			fields = append(fields, f)
			found = found || strings.Contains(reason, c.reason)
		}
		slices.Sort(fields)
		if !slices.Equal(fields, c.fields) || !found {
			t.Errorf("%s %s: %s, want fields %q and %q", c.method, c.path, r.body, c.fields, c.reason)
		}
		if e.snapshot() != before {
			t.Errorf("%s %s changed the store", c.method, c.path)
		}
	}
}

func TestFirewallScopes(t *testing.T) {
	e := newEnv(t)
	mk := func(scopes string) string {
		r := e.must("POST", "/v4/profile/tokens", `{"label":"t","scopes":"`+scopes+`"}`)
		return r["token"].(string)
	}
	fwRO, fwRW, nbRW := mk("firewall:read_only"), mk("firewall:read_write"), mk("nodebalancers:read_write")
	body := `{"label":"scoped","rules":{"inbound_policy":"ACCEPT","outbound_policy":"ACCEPT"}}`
	if r := e.doAs(nbRW, "GET", "/v4/networking/firewalls", ""); r.status != 403 {
		t.Fatalf("nodebalancers token listing firewalls: %d", r.status)
	}
	if r := e.doAs(fwRO, "POST", "/v4/networking/firewalls", body); r.status != 403 {
		t.Fatalf("read-only firewall token creating: %d", r.status)
	}
	if r := e.doAs(fwRO, "GET", "/v4/networking/firewalls", ""); r.status != 200 {
		t.Fatalf("read-only firewall token listing: %d", r.status)
	}
	r := e.doAs(fwRW, "POST", "/v4/networking/firewalls", body)
	if r.status != 200 {
		t.Fatalf("read-write firewall token creating: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"]
	if r := e.doAs(nbRW, "POST", "/v4/nodebalancers", fmt.Sprintf(`{"region":"local","firewall_id":%v}`, id)); r.status != 403 || r.errs(t)["firewall_id"] == "" {
		t.Fatalf("firewall_id without firewall scope: %d %s", r.status, r.body)
	}
	if r := e.doAs(fwRW, "GET", "/v4/nodebalancers", ""); r.status != 403 {
		t.Fatalf("firewall token listing NodeBalancers: %d", r.status)
	}
}
