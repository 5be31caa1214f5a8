package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Cloud Firewalls: /networking/firewalls, their rules and devices, and
// /nodebalancers/{id}/firewalls. Rules are validated by model, cross-object rules
// (unique labels, one firewall per NodeBalancer) are the store's.

// firewallFields are the filterable fields of firewalls.
var firewallFields = filterFields{"id": kindInt, "label": kindString, "status": kindString, "tags": kindTags}

// fwAccess is what the firewall routes need: Linode's "firewall" scope.
func fwAccess(method string) access {
	if method == http.MethodGet {
		return readFW
	}
	return writeFW
}

// ---- Response shapes (as linodego's firewalls.go, firewall_rules.go and
// firewall_devices.go read them)

type addressesJSON struct {
	IPv4 *[]string `json:"ipv4,omitempty"`
	IPv6 *[]string `json:"ipv6,omitempty"`
}

type ruleJSON struct {
	Action      model.RuleAction   `json:"action"`
	Label       string             `json:"label"`
	Description string             `json:"description,omitempty"`
	Protocol    model.RuleProtocol `json:"protocol"`
	Ports       string             `json:"ports,omitempty"`
	Addresses   addressesJSON      `json:"addresses"`
}

type rulesJSON struct {
	Inbound        []ruleJSON       `json:"inbound"`
	InboundPolicy  model.RuleAction `json:"inbound_policy"`
	Outbound       []ruleJSON       `json:"outbound"`
	OutboundPolicy model.RuleAction `json:"outbound_policy"`
	Version        int              `json:"version"`
	Fingerprint    string           `json:"fingerprint"`
}

type entityJSON struct {
	ID           int              `json:"id"`
	Type         model.DeviceType `json:"type"`
	Label        string           `json:"label"`
	URL          string           `json:"url"`
	ParentEntity *entityJSON      `json:"parent_entity"`
}

type firewallJSON struct {
	ID       int                  `json:"id"`
	Label    string               `json:"label"`
	Status   model.FirewallStatus `json:"status"`
	Tags     []string             `json:"tags"`
	Rules    rulesJSON            `json:"rules"`
	Entities []entityJSON         `json:"entities"`
	Created  string               `json:"created"`
	Updated  string               `json:"updated"`
}

type deviceJSON struct {
	ID      int        `json:"id"`
	Entity  entityJSON `json:"entity"`
	Created string     `json:"created"`
	Updated string     `json:"updated"`
}

func renderRules(r model.FirewallRules) rulesJSON {
	conv := func(rs []model.FirewallRule) []ruleJSON {
		out := make([]ruleJSON, 0, len(rs))
		for _, r := range rs {
			j := ruleJSON{Action: r.Action, Label: r.Label, Description: r.Description, Protocol: r.Protocol, Ports: r.Ports}
			if r.Addresses.IPv4 != nil {
				j.Addresses.IPv4 = &r.Addresses.IPv4
			}
			if r.Addresses.IPv6 != nil {
				j.Addresses.IPv6 = &r.Addresses.IPv6
			}
			out = append(out, j)
		}
		return out
	}
	return rulesJSON{Inbound: conv(r.Inbound), InboundPolicy: r.InboundPolicy, Outbound: conv(r.Outbound),
		OutboundPolicy: r.OutboundPolicy, Version: r.Version, Fingerprint: r.Fingerprint}
}

// entity renders the NodeBalancer a device stands for.
func (c *call) entity(d model.FirewallDevice) entityJSON {
	e := entityJSON{ID: d.EntityID, Type: d.Type, URL: "/v4/nodebalancers/" + strconv.Itoa(d.EntityID)}
	if nb, err := c.a.o.DB.NodeBalancer(d.EntityID); err == nil {
		e.Label = nb.Label
	}
	return e
}

func (c *call) renderDevice(d model.FirewallDevice) deviceJSON {
	return deviceJSON{ID: d.ID, Entity: c.entity(d), Created: formatTime(d.Created), Updated: formatTime(d.Updated)}
}

func (c *call) renderFirewall(fw model.Firewall) (any, error) {
	devs, err := c.a.o.DB.FirewallDevices(fw.ID)
	if err != nil {
		return nil, err
	}
	out := firewallJSON{ID: fw.ID, Label: fw.Label, Status: fw.Status, Tags: fw.Tags, Rules: renderRules(fw.Rules),
		Entities: make([]entityJSON, 0, len(devs)), Created: formatTime(fw.Created), Updated: formatTime(fw.Updated)}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	for _, d := range devs {
		out.Entities = append(out.Entities, c.entity(d))
	}
	return out, nil
}

func firewallGetter(fw model.Firewall) getter {
	return func(f string) fieldValue {
		switch f {
		case "id":
			return fieldValue{n: int64(fw.ID)}
		case "label":
			return fieldValue{s: fw.Label}
		case "status":
			return fieldValue{s: string(fw.Status)}
		case "tags":
			return fieldValue{tags: fw.Tags}
		}
		return fieldValue{}
	}
}

// ---- Decoding

// readRule reads one rule object.
func readRule(o *object) model.FirewallRule {
	var r model.FirewallRule
	var s string
	if o.str("action", &s) {
		r.Action = model.RuleAction(s)
	}
	if o.str("protocol", &s) {
		r.Protocol = model.RuleProtocol(s)
	}
	o.str("label", &r.Label)
	o.str("description", &r.Description)
	o.str("ports", &r.Ports)
	if v, ok := o.take("addresses"); ok {
		if ao := newObject(v, o.field("addresses"), o.es, o.ignored); ao != nil {
			ao.strings("ipv4", &r.Addresses.IPv4)
			ao.strings("ipv6", &r.Addresses.IPv6)
			ao.finish()
		}
	}
	o.unsupported("ruleset")
	return r
}

// readRuleList reads the rules under key; absent or null is an empty list.
func readRuleList(o *object, key string) []model.FirewallRule {
	list, _ := o.objects(key)
	out := make([]model.FirewallRule, 0, len(list))
	for _, ro := range list {
		if ro == nil {
			out = append(out, model.FirewallRule{})
			continue
		}
		out = append(out, readRule(ro))
		ro.finish()
	}
	return out
}

// readRules reads a rule set. A policy that is absent or "" (linodego sends "" for
// one its caller left unset) is returned empty: a create refuses it, a rules update
// keeps the stored one.
func readRules(o *object) model.FirewallRules {
	var r model.FirewallRules
	r.Inbound = readRuleList(o, "inbound")
	r.Outbound = readRuleList(o, "outbound")
	var s string
	if o.str("inbound_policy", &s) {
		r.InboundPolicy = model.RuleAction(s)
	}
	if o.str("outbound_policy", &s) {
		r.OutboundPolicy = model.RuleAction(s)
	}
	o.ignore("version", "fingerprint")
	return r
}

// ---- Firewalls

func listFirewallsAll(c *call) (any, error) {
	all, err := c.a.o.DB.ListFirewalls()
	if err != nil {
		return nil, err
	}
	return list(c, all, firewallFields, firewallGetter, c.renderFirewall)
}

func createFirewall(c *call) (any, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	var es model.Errors
	o := parseBody(b, &es, &c.ignored)
	if o == nil {
		return nil, es
	}
	fw := model.Firewall{Status: model.FirewallEnabled, Tags: []string{}}
	if !o.str("label", &fw.Label) && !hasErr(es, "label") {
		es.Add("label", "label is required")
	}
	o.strings("tags", &fw.Tags)
	v, ok := o.take("rules")
	if ok {
		if ro := newObject(v, "rules", &es, &c.ignored); ro != nil {
			fw.Rules = readRules(ro)
			ro.finish()
		}
	} else {
		es.Add("rules", "rules is required: an object with inbound_policy and outbound_policy (and, optionally, inbound and outbound rules)")
	}
	var nbIDs []int
	if dv, ok := o.take("devices"); ok {
		if do := newObject(dv, "devices", &es, &c.ignored); do != nil {
			nbIDs = readIntList(do, "nodebalancers")
			do.unsupported("linodes", "linode_interfaces")
			do.finish()
		}
	}
	o.ignore("id", "created", "updated", "entities", "status")
	o.finish()
	if len(es) > 0 {
		return nil, es
	}
	if fw.Tags == nil {
		fw.Tags = []string{}
	}
	es = append(es, model.ValidateFirewall(&fw)...)
	if ok {
		es.Merge("rules", model.ValidateFirewallRules(&fw.Rules))
	}
	if len(es) > 0 {
		return nil, es
	}
	model.NormalizeRules(&fw.Rules)
	fw, err = c.a.o.DB.CreateFirewall(fw, nbIDs)
	if err != nil {
		return nil, err
	}
	return c.renderFirewall(fw)
}

// readIntList reads a list of positive integers under key.
func readIntList(o *object, key string) []int {
	var out []int
	v, ok := o.take(key)
	if !ok {
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		o.es.Add(o.field(key), o.field(key)+" must be a list of ids")
		return nil
	}
	for i, r := range raw {
		n, ok := parseInt(r)
		if !ok || n <= 0 {
			f := o.field(key) + "[" + strconv.Itoa(i) + "]"
			o.es.Add(f, f+" must be a positive integer id")
			continue
		}
		out = append(out, n)
	}
	return out
}

func getFirewall(c *call) (any, error) {
	fw, err := c.a.o.DB.Firewall(c.ids[0])
	if err != nil {
		return nil, err
	}
	return c.renderFirewall(fw)
}

func updateFirewall(c *call) (any, error) {
	if _, err := c.a.o.DB.Firewall(c.ids[0]); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	var es model.Errors
	o := parseBody(b, &es, &c.ignored)
	if o == nil {
		return nil, es
	}
	label, status := optStr(o, "label"), optStr(o, "status")
	var tags []string
	hasTags := o.strings("tags", &tags)
	o.ignore("id", "created", "updated", "entities", "rules")
	o.finish()
	if len(es) > 0 {
		return nil, es
	}
	fw, err := c.a.o.DB.UpdateFirewall(c.ids[0], func(fw *model.Firewall) error {
		// linodego omits an empty label or status, so one given is meant: "" is
		// refused by validation rather than read as "keep".
		setStr(&fw.Label, label)
		if status != nil {
			fw.Status = model.FirewallStatus(*status)
		}
		if hasTags {
			fw.Tags = tags
		}
		return model.ValidateFirewall(fw).Err()
	})
	if err != nil {
		return nil, err
	}
	return c.renderFirewall(fw)
}

func deleteFirewall(c *call) (any, error) {
	return nil, c.a.o.DB.DeleteFirewall(c.ids[0])
}

// ---- Rules

func getFirewallRules(c *call) (any, error) {
	fw, err := c.a.o.DB.Firewall(c.ids[0])
	if err != nil {
		return nil, err
	}
	return renderRules(fw.Rules), nil
}

// updateFirewallRules replaces the rule set. A policy left out (or "") keeps its
// stored value; rule lists left out (or null) become empty, as Linode replaces the
// whole rule set.
func updateFirewallRules(c *call) (any, error) {
	fw, err := c.a.o.DB.Firewall(c.ids[0])
	if err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	var es model.Errors
	o := parseBody(b, &es, &c.ignored)
	if o == nil {
		return nil, es
	}
	r := readRules(o)
	o.finish()
	if len(es) > 0 {
		return nil, es
	}
	if r.InboundPolicy == "" {
		r.InboundPolicy = fw.Rules.InboundPolicy
	}
	if r.OutboundPolicy == "" {
		r.OutboundPolicy = fw.Rules.OutboundPolicy
	}
	if es := model.ValidateFirewallRules(&r); len(es) > 0 {
		return nil, es
	}
	model.NormalizeRules(&r)
	out, err := c.a.o.DB.UpdateFirewallRules(c.ids[0], r)
	if err != nil {
		return nil, err
	}
	return renderRules(out), nil
}

// ---- Devices

func deviceGetter(d model.FirewallDevice) getter {
	return func(f string) fieldValue {
		if f == "id" {
			return fieldValue{n: int64(d.ID)}
		}
		return fieldValue{}
	}
}

var deviceFields = filterFields{"id": kindInt}

func listFirewallDevices(c *call) (any, error) {
	devs, err := c.a.o.DB.FirewallDevices(c.ids[0])
	if err != nil {
		return nil, err
	}
	return list(c, devs, deviceFields, deviceGetter, func(d model.FirewallDevice) (any, error) { return c.renderDevice(d), nil })
}

func createFirewallDevice(c *call) (any, error) {
	if _, err := c.a.o.DB.Firewall(c.ids[0]); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	var es model.Errors
	o := parseBody(b, &es, &c.ignored)
	if o == nil {
		return nil, es
	}
	var id int
	var typ string
	hasID := o.integer("id", &id)
	o.str("type", &typ)
	o.finish()
	if len(es) > 0 {
		return nil, es
	}
	es = model.ValidateDeviceType(typ)
	switch {
	case !hasID:
		es.Add("id", "id is required: the id of the NodeBalancer to guard")
	case id <= 0:
		es.Add("id", "id must be a positive integer")
	}
	if len(es) > 0 {
		return nil, es
	}
	d, err := c.a.o.DB.CreateFirewallDevice(c.ids[0], id)
	if err != nil {
		return nil, err
	}
	return c.renderDevice(d), nil
}

func getFirewallDevice(c *call) (any, error) {
	d, err := c.a.o.DB.FirewallDevice(c.ids[0], c.ids[1])
	if err != nil {
		return nil, err
	}
	return c.renderDevice(d), nil
}

func deleteFirewallDevice(c *call) (any, error) {
	return nil, c.a.o.DB.DeleteFirewallDevice(c.ids[0], c.ids[1])
}

// ---- NodeBalancers

func listNodeBalancerFirewalls(c *call) (any, error) {
	fws, err := c.a.o.DB.NodeBalancerFirewalls(c.ids[0])
	if err != nil {
		return nil, err
	}
	return list(c, fws, firewallFields, firewallGetter, c.renderFirewall)
}
