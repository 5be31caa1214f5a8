package cli

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// `firewalls`: linode-cli's Cloud Firewall verbs. Rule lists are JSON, as linode-cli
// takes them (--rules.inbound '[{"action":"ACCEPT","protocol":"TCP",…}]').

var (
	firewallColumns = []string{"id", "label", "status", "rules.inbound_policy", "rules.outbound_policy", "rules.version"}
	deviceColumns   = []string{"id", "entity.id", "entity.type", "entity.label", "created"}
	ruleColumns     = []string{"direction", "label", "action", "protocol", "ports", "ipv4", "ipv6"}

	fwStatus = field{name: "status", usage: "enabled or disabled (a disabled firewall filters nothing)",
		values: enumValues(model.FirewallEnabled, model.FirewallDisabled)}
	fwLabel = field{name: "label", usage: "label: 3-32 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"}

	firewallUpdateFields = []field{fwLabel, fwStatus, fTags}
	policyUsage          = "ACCEPT or DROP: what happens to traffic no rule matches"
	rulesUsage           = `rules as a JSON list, e.g. '[{"action":"ACCEPT","protocol":"TCP","ports":"80, 443","addresses":{"ipv4":["192.0.2.0/24"]}}]'`
)

// Positional id names of firewalls.
const (
	argFirewall = "firewall-id"
	argDevice   = "device-id"
)

func firewallPath(id int) string { return "/networking/firewalls/" + strconv.Itoa(id) }

// fwTreeIDs completes firewall ids, then device ids of the first.
func fwTreeIDs(ids []int) (string, string) {
	if len(ids) == 0 {
		return "/networking/firewalls", "label"
	}
	return firewallPath(ids[0]) + "/devices", "created"
}

// newFirewallsCommand returns `firewalls`: linode-cli's Cloud Firewall verbs.
func newFirewallsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "firewalls",
		Aliases: []string{"firewall", "fw"},
		Short:   "Manage Cloud Firewalls guarding NodeBalancers (linode-cli's verbs)",
		Long: `Manage the Cloud Firewalls that guard NodeBalancers, with linode-cli's verbs.

A firewall's inbound rules apply, in order, to every new client of the NodeBalancers
it is attached to (its devices); the first matching rule decides, else the inbound
policy. Rule lists are given as JSON, as linode-cli takes them. Managing firewalls
needs a token with firewall:read_only (to read) or firewall:read_write scopes.`,
	}
	g := addGlobals(cmd)
	one := func(ids []int) string { return firewallPath(ids[0]) }
	sp := func(use, short string, args ...string) spec {
		return spec{use: use, short: short, args: args, ids: fwTreeIDs}
	}

	list := g.listCommand(sp("list", "List firewalls"), func([]int) string { return "/networking/firewalls" }, firewallColumns)
	view := g.viewCommand(sp("view", "Show one firewall", argFirewall), one, firewallColumns)

	create := g.command(spec{use: "create", short: "Create a firewall, optionally attached to NodeBalancers", ids: fwTreeIDs,
		example: `  nodebalancer firewalls create --label office-only --rules.inbound_policy DROP --rules.outbound_policy ACCEPT \
    --rules.inbound '[{"action":"ACCEPT","protocol":"TCP","ports":"80, 443","addresses":{"ipv4":["192.0.2.0/24"]}}]' \
    --devices.nodebalancers 1`},
		func(s *session) error {
			fs := s.cmd.Flags()
			body, err := bodyFromFlags(fs, []field{fwLabel, fTags})
			if err != nil {
				return err
			}
			rules, err := rulesFromFlags(s.cmd, "rules.")
			if err != nil {
				return err
			}
			body["rules"] = rules
			if fs.Changed("devices.nodebalancers") {
				ids, _ := fs.GetIntSlice("devices.nodebalancers")
				body["devices"] = map[string]any{"nodebalancers": ids}
			}
			return s.send(http.MethodPost, "/networking/firewalls", body, firewallColumns)
		})
	addFields(create, []field{fwLabel, fTags})
	addRuleFlags(create, "rules.")
	create.Flags().IntSlice("devices.nodebalancers", nil, "NodeBalancer to attach the firewall to (repeat, or comma separated)")

	update := g.command(spec{use: "update", short: "Change a firewall's label, status or tags", args: []string{argFirewall}, ids: fwTreeIDs,
		example: "  nodebalancer firewalls update 1 --status disabled"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), firewallUpdateFields)
			if err != nil {
				return err
			}
			if len(body) == 0 {
				return noChanges(firewallUpdateFields)
			}
			return s.send(http.MethodPut, firewallPath(s.ids[0]), body, firewallColumns)
		})
	addFields(update, firewallUpdateFields)

	del := g.deleteCommand(sp("delete", "Delete a firewall (its NodeBalancers are no longer filtered)", argFirewall), one)

	rulesList := g.command(sp("rules-list", "List a firewall's rules and policies", argFirewall), func(s *session) error {
		raw, err := s.c.do(s.ctx, http.MethodGet, firewallPath(s.ids[0])+"/rules", nil)
		if err != nil {
			return err
		}
		return printRules(s, raw)
	})

	rulesUpdate := g.command(spec{use: "rules-update", short: "Replace a firewall's rules", args: []string{argFirewall}, ids: fwTreeIDs,
		long: "Replace a firewall's rules: the lists given replace the stored ones (a list left out\nbecomes empty, as Linode's API does); a policy left out keeps its value.",
		example: `  nodebalancer firewalls rules-update 1 --inbound_policy DROP \
    --inbound '[{"label":"web","action":"ACCEPT","protocol":"TCP","ports":"80","addresses":{"ipv4":["0.0.0.0/0"],"ipv6":["::/0"]}}]'`},
		func(s *session) error {
			body, err := rulesFromFlags(s.cmd, "")
			if err != nil {
				return err
			}
			raw, err := s.c.do(s.ctx, http.MethodPut, firewallPath(s.ids[0])+"/rules", body)
			if err != nil {
				return err
			}
			return printRules(s, raw)
		})
	addRuleFlags(rulesUpdate, "")

	devices := g.listCommand(sp("devices-list", "List the NodeBalancers a firewall guards", argFirewall),
		func(ids []int) string { return firewallPath(ids[0]) + "/devices" }, deviceColumns)
	deviceView := g.viewCommand(sp("device-view", "Show one device of a firewall", argFirewall, argDevice),
		func(ids []int) string { return firewallPath(ids[0]) + "/devices/" + strconv.Itoa(ids[1]) }, deviceColumns)
	deviceFields := []field{
		{name: "id", kind: kindInt, usage: "the id of the NodeBalancer to guard"},
		{name: "type", usage: "the device type: nodebalancer (the only kind this server has)", values: enumValues(model.DeviceNodeBalancer)},
	}
	deviceCreate := g.command(spec{use: "device-create", short: "Attach a firewall to a NodeBalancer", args: []string{argFirewall}, ids: fwTreeIDs,
		example: "  nodebalancer firewalls device-create 1 --id 3 --type nodebalancer"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), deviceFields)
			if err != nil {
				return err
			}
			return s.send(http.MethodPost, firewallPath(s.ids[0])+"/devices", body, deviceColumns)
		})
	addFields(deviceCreate, deviceFields)
	deviceDelete := g.deleteCommand(sp("device-delete", "Detach a firewall from a NodeBalancer", argFirewall, argDevice),
		func(ids []int) string { return firewallPath(ids[0]) + "/devices/" + strconv.Itoa(ids[1]) })

	cmd.AddCommand(list, view, create, update, del, rulesList, rulesUpdate, devices, deviceView, deviceCreate, deviceDelete)
	finishParent(cmd)
	return cmd
}

// addRuleFlags registers the rule-set flags under prefix ("rules." on create).
func addRuleFlags(cmd *cobra.Command, prefix string) {
	fs := cmd.Flags()
	fs.String(prefix+"inbound", "", "inbound "+rulesUsage)
	fs.String(prefix+"outbound", "", "outbound "+rulesUsage)
	for _, p := range []string{"inbound_policy", "outbound_policy"} {
		fs.String(prefix+p, "", policyUsage)
		_ = cmd.RegisterFlagCompletionFunc(prefix+p, cobra.FixedCompletions(model.RuleActionValues, cobra.ShellCompDirectiveNoFileComp))
	}
}

// rulesFromFlags builds a rule set body from the rule-set flags under prefix. A rule
// list that is not JSON is a usage error naming its flag; what the rules say is the
// API's to judge.
func rulesFromFlags(cmd *cobra.Command, prefix string) (map[string]any, error) {
	fs := cmd.Flags()
	body := map[string]any{}
	for _, k := range []string{"inbound", "outbound"} {
		if !fs.Changed(prefix + k) {
			continue
		}
		v, _ := fs.GetString(prefix + k)
		var rules []json.RawMessage
		if err := json.Unmarshal([]byte(v), &rules); err != nil {
			return nil, usageErrorf("--%s%s must be a JSON list of rules, e.g. %s (%v)", prefix, k,
				`'[{"action":"DROP","protocol":"TCP","addresses":{"ipv4":["192.0.2.0/24"]}}]'`, err)
		}
		if rules == nil {
			rules = []json.RawMessage{}
		}
		body[k] = rules
	}
	for _, k := range []string{"inbound_policy", "outbound_policy"} {
		if fs.Changed(prefix + k) {
			v, _ := fs.GetString(prefix + k)
			body[k] = strings.ToUpper(v)
		}
	}
	return body, nil
}

// ruleSet is the part of the API's rule set a table shows.
type ruleSet struct {
	Inbound        []map[string]any `json:"inbound"`
	InboundPolicy  string           `json:"inbound_policy"`
	Outbound       []map[string]any `json:"outbound"`
	OutboundPolicy string           `json:"outbound_policy"`
	Version        int              `json:"version"`
}

// printRules prints a rule set: with --json as the API gave it, else one row per
// rule (direction, label, action, protocol, ports, ipv4, ipv6) and one per policy.
func printRules(s *session, raw json.RawMessage) error {
	if s.p.mode == modeJSON {
		return s.p.objects(nil, []json.RawMessage{raw}, false)
	}
	var rs ruleSet
	if err := json.Unmarshal(raw, &rs); err != nil {
		return err
	}
	var rows [][]string
	add := func(dir string, rules []map[string]any, policy string) {
		for _, r := range rules {
			addrs, _ := r["addresses"].(map[string]any)
			rows = append(rows, []string{dir, cellText(r["label"]), cellText(r["action"]), cellText(r["protocol"]),
				cellText(r["ports"]), cellText(addrs["ipv4"]), cellText(addrs["ipv6"])})
		}
		rows = append(rows, []string{dir, "(policy)", policy, "", "", "", ""})
	}
	add("inbound", rs.Inbound, rs.InboundPolicy)
	add("outbound", rs.Outbound, rs.OutboundPolicy)
	return s.p.table(ruleColumns, rows)
}
