package cli

import (
	"strings"
	"testing"
)

func TestFirewallVerbs(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb := e.object("nodebalancers", "create", "--label", "guarded")
	fw := e.object("firewalls", "create", "--label", "office-only", "--tags", "prod",
		"--rules.inbound_policy", "DROP", "--rules.outbound_policy", "ACCEPT",
		"--rules.inbound", `[{"label":"web","action":"ACCEPT","protocol":"TCP","ports":"80, 443","addresses":{"ipv4":["192.0.2.0/24"],"ipv6":["2001:db8::/32"]}}]`,
		"--devices.nodebalancers", id(nb))
	if fw["label"] != "office-only" || fw["status"] != "enabled" || jsonText(fw["entities"]) == "[]" {
		t.Fatalf("created %v", fw)
	}
	if got := e.object("firewalls", "view", id(fw)); got["id"] != fw["id"] {
		t.Fatalf("view %v", got)
	}
	if l := e.objects("firewalls", "list"); len(l) != 1 {
		t.Fatalf("list %v", l)
	}
	table := e.ok("firewalls", "list")
	if !strings.Contains(table, "office-only") || !strings.Contains(table, "enabled") {
		t.Fatalf("list table %q", table)
	}

	// rules-list prints one row per rule and per policy.
	rules := lines(e.ok("firewalls", "rules-list", id(fw), "--text", "--no-headers"))
	want := []string{
		"inbound\tweb\tACCEPT\tTCP\t80, 443\t192.0.2.0/24\t2001:db8::/32",
		"inbound\t(policy)\tDROP\t\t\t\t",
		"outbound\t(policy)\tACCEPT\t\t\t\t",
	}
	if strings.Join(rules, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rules-list:\n%s\nwant:\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
	rs := e.object("firewalls", "rules-update", id(fw), "--inbound_policy", "accept", "--inbound", "[]")
	if rs["inbound_policy"] != "ACCEPT" || jsonText(rs["inbound"]) != "[]" || rs["version"] != 2.0 {
		t.Fatalf("rules-update %v", rs)
	}

	// Mistakes: the flag for a list that is not JSON, the API's field for the rest.
	r := e.run("firewalls", "rules-update", id(fw), "--inbound", "{not json")
	if r.code != 2 || !strings.Contains(r.stderr, "--inbound must be a JSON list") {
		t.Fatalf("bad JSON: %+v", r)
	}
	r = e.run("firewalls", "rules-update", id(fw), "--inbound", `[{"action":"DROP","protocol":"TCP","ports":"080","addresses":{"ipv4":["10.0.0.0/8"]}}]`)
	if r.code != 1 || !strings.Contains(r.stderr, "inbound[0].ports: ports: '080' is not a port") {
		t.Fatalf("bad ports: %+v", r)
	}
	r = e.run("firewalls", "device-create", id(fw), "--id", id(nb), "--type", "linode")
	if r.code != 1 || !strings.Contains(r.stderr, "type: type 'linode' is not supported") {
		t.Fatalf("linode device: %+v", r)
	}
	r = e.run("firewalls", "update", id(fw))
	if r.code != 2 || !strings.Contains(r.stderr, "nothing to change") {
		t.Fatalf("empty update: %+v", r)
	}

	up := e.object("firewalls", "update", id(fw), "--status", "disabled", "--label", "office.v2")
	if up["status"] != "disabled" || up["label"] != "office.v2" {
		t.Fatalf("update %v", up)
	}
	devs := e.objects("firewalls", "devices-list", id(fw))
	if len(devs) != 1 {
		t.Fatalf("devices %v", devs)
	}
	if d := e.object("firewalls", "device-view", id(fw), id(devs[0])); jsonText(d["entity"]) == "" {
		t.Fatalf("device-view %v", d)
	}
	if out := e.ok("firewalls", "device-delete", id(fw), id(devs[0])); out != "" {
		t.Fatalf("device-delete printed %q", out)
	}
	d := e.object("firewalls", "device-create", id(fw), "--id", id(nb), "--type", "nodebalancer")
	if !strings.Contains(jsonText(d["entity"]), `"label":"guarded"`) {
		t.Fatalf("device-create %v", d)
	}
	if l := e.objects("nodebalancers", "firewalls", id(nb)); len(l) != 1 {
		t.Fatalf("nodebalancers firewalls %v", l)
	}
	if out := e.ok("firewalls", "delete", id(fw)); out != "" {
		t.Fatalf("delete printed %q", out)
	}
	if l := e.objects("firewalls", "list"); len(l) != 0 {
		t.Fatalf("list after delete %v", l)
	}
}
