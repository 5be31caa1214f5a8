package model

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Firewall is a Cloud Firewall: an ordered set of inbound (and outbound) rules that
// guards the NodeBalancers it is attached to.
type Firewall struct {
	ID      int            `json:"id"`
	Label   string         `json:"label"`
	Status  FirewallStatus `json:"status"`
	Tags    []string       `json:"tags"`
	Rules   FirewallRules  `json:"rules"`
	Created time.Time      `json:"created"`
	Updated time.Time      `json:"updated"`
}

// FirewallRules is a firewall's rule set. Rules are applied in order and the first
// that matches decides; a connection no rule matches gets the direction's policy.
type FirewallRules struct {
	Inbound        []FirewallRule `json:"inbound"`
	InboundPolicy  RuleAction     `json:"inbound_policy"`
	Outbound       []FirewallRule `json:"outbound"`
	OutboundPolicy RuleAction     `json:"outbound_policy"`
	// Version counts rule changes from 1; Fingerprint is a 32-bit hash of the rules
	// as 8 hex digits. Both are read-only.
	Version     int    `json:"version"`
	Fingerprint string `json:"fingerprint"`
}

// FirewallRule is one rule: what it does to the traffic it matches (protocol,
// destination ports and source addresses).
type FirewallRule struct {
	Action      RuleAction        `json:"action"`
	Label       string            `json:"label,omitempty"`
	Description string            `json:"description,omitempty"`
	Protocol    RuleProtocol      `json:"protocol"`
	Ports       string            `json:"ports,omitempty"`
	Addresses   FirewallAddresses `json:"addresses"`
}

// FirewallAddresses are a rule's source networks. A nil list is absent: the rule
// matches no address of that family.
type FirewallAddresses struct {
	IPv4 []string `json:"ipv4,omitempty"`
	IPv6 []string `json:"ipv6,omitempty"`
}

// FirewallDevice attaches a firewall to one entity (here: a NodeBalancer).
type FirewallDevice struct {
	ID         int        `json:"id"`
	FirewallID int        `json:"firewall_id"`
	Type       DeviceType `json:"type"`
	EntityID   int        `json:"entity_id"`
	Created    time.Time  `json:"created"`
	Updated    time.Time  `json:"updated"`
}

// FirewallStatus says whether a firewall filters.
type FirewallStatus string

// Firewall statuses a client may set.
const (
	FirewallEnabled  FirewallStatus = "enabled"
	FirewallDisabled FirewallStatus = "disabled"
)

// RuleAction is what a rule (or a policy) does with the traffic it decides on.
type RuleAction string

// Rule actions.
const (
	ActionAccept RuleAction = "ACCEPT"
	ActionDrop   RuleAction = "DROP"
)

// RuleProtocol is the traffic a rule is about.
type RuleProtocol string

// Rule protocols, as Linode names them.
const (
	RuleTCP     RuleProtocol = "TCP"
	RuleUDP     RuleProtocol = "UDP"
	RuleICMP    RuleProtocol = "ICMP"
	RuleIPENCAP RuleProtocol = "IPENCAP"
)

// DeviceType is the kind of entity a firewall device stands for.
type DeviceType string

// Device types. Only NodeBalancers exist on this server; the others are named so
// that a request for them is refused by name.
const (
	DeviceNodeBalancer    DeviceType = "nodebalancer"
	DeviceLinode          DeviceType = "linode"
	DeviceLinodeInterface DeviceType = "linode_interface"
)

var (
	firewallStatuses = enum{values: []string{"enabled", "disabled"}}
	ruleActions      = enum{values: []string{"ACCEPT", "DROP"}}
	ruleProtocols    = enum{values: []string{"TCP", "UDP", "ICMP", "IPENCAP"}}
	deviceTypes      = enum{values: []string{"nodebalancer"}, notSupported: []string{"linode", "linode_interface"}}
)

// Values of the firewall enums, for clients that offer choices.
var (
	FirewallStatusValues = firewallStatuses.values
	RuleActionValues     = ruleActions.values
	RuleProtocolValues   = ruleProtocols.values
)

// Limits of firewalls, as Linode documents them.
const (
	MaxFirewallRules     = 25  // inbound and outbound together
	MaxRuleAddresses     = 255 // ipv4 and ipv6 together; a network counts as one
	MaxRulePortPieces    = 15  // a single port is one piece, a range two
	MinRuleLabel         = 3
	MaxRuleLabel         = 32
	MaxRuleDescription   = 100
	MinFirewallLabel     = 3
	MaxFirewallLabel     = 32
	firewallLabelAllowed = "letters, digits, '-', '_' and '.'"
)

// firewallLabelRE is Linode's: alphanumeric at both ends, -_. inside, never two of
// them in a row.
var firewallLabelRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9]|[-_.][a-zA-Z0-9])*$`)

// ValidateFirewall checks a firewall's label, status and tags (not its rules).
func ValidateFirewall(fw *Firewall) Errors {
	var es Errors
	switch {
	case len(fw.Label) < MinFirewallLabel || len(fw.Label) > MaxFirewallLabel:
		es.Add("label", fmt.Sprintf("label must be %d-%d characters", MinFirewallLabel, MaxFirewallLabel))
	case !firewallLabelRE.MatchString(fw.Label):
		es.Add("label", "label must only use "+firewallLabelAllowed+", begin and end with a letter or digit, and never have two of '-', '_', '.' in a row")
	}
	checkEnum(&es, "status", firewallStatuses, string(fw.Status))
	checkTags(&es, fw.Tags)
	return es
}

// ValidateFirewallRules checks a rule set: both policies, every rule and the limits.
// Field names are relative to the rule set ("inbound[0].ports").
func ValidateFirewallRules(r *FirewallRules) Errors {
	var es Errors
	if r.InboundPolicy == "" {
		es.Add("inbound_policy", "inbound_policy is required: ACCEPT or DROP")
	} else {
		checkEnum(&es, "inbound_policy", ruleActions, string(r.InboundPolicy))
	}
	if r.OutboundPolicy == "" {
		es.Add("outbound_policy", "outbound_policy is required: ACCEPT or DROP")
	} else {
		checkEnum(&es, "outbound_policy", ruleActions, string(r.OutboundPolicy))
	}
	if n := len(r.Inbound) + len(r.Outbound); n > MaxFirewallRules {
		es.Add("inbound", fmt.Sprintf("a firewall has at most %d rules across inbound and outbound; this one has %d", MaxFirewallRules, n))
	}
	for i := range r.Inbound {
		es.Merge("inbound["+strconv.Itoa(i)+"]", ValidateFirewallRule(&r.Inbound[i]))
	}
	for i := range r.Outbound {
		es.Merge("outbound["+strconv.Itoa(i)+"]", ValidateFirewallRule(&r.Outbound[i]))
	}
	return es
}

// ValidateFirewallRule checks one rule. Field names are relative to the rule.
func ValidateFirewallRule(r *FirewallRule) Errors {
	var es Errors
	if r.Action == "" {
		es.Add("action", "action is required: ACCEPT or DROP")
	} else {
		checkEnum(&es, "action", ruleActions, string(r.Action))
	}
	if r.Protocol == "" {
		es.Add("protocol", "protocol is required: one of "+ruleProtocols.list())
	} else {
		checkEnum(&es, "protocol", ruleProtocols, string(r.Protocol))
	}
	if r.Label != "" {
		switch n := utf8.RuneCountInString(r.Label); {
		case !utf8.ValidString(r.Label) || n < MinRuleLabel || n > MaxRuleLabel:
			es.Add("label", fmt.Sprintf("label must be %d-%d characters", MinRuleLabel, MaxRuleLabel))
		case hasControl(r.Label):
			es.Add("label", "label must not contain control characters")
		}
	}
	if r.Description != "" {
		if !utf8.ValidString(r.Description) || utf8.RuneCountInString(r.Description) > MaxRuleDescription {
			es.Add("description", fmt.Sprintf("description must be 1-%d characters", MaxRuleDescription))
		} else if hasControl(r.Description) {
			es.Add("description", "description must not contain control characters")
		}
	}
	if r.Ports != "" {
		if r.Protocol == RuleICMP || r.Protocol == RuleIPENCAP {
			es.Add("ports", "ports are only allowed with protocol TCP or UDP")
		} else if _, reason := ParsePorts(r.Ports); reason != "" {
			es.Add("ports", reason)
		}
	}
	checkRuleAddresses(&es, r.Addresses)
	return es
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func checkRuleAddresses(es *Errors, a FirewallAddresses) {
	if a.IPv4 == nil && a.IPv6 == nil {
		es.Add("addresses", "addresses must contain ipv4, ipv6 or both")
		return
	}
	if n := len(a.IPv4) + len(a.IPv6); n > MaxRuleAddresses {
		es.Add("addresses", fmt.Sprintf("a rule has at most %d addresses across ipv4 and ipv6; this one has %d", MaxRuleAddresses, n))
		return
	}
	for _, fam := range []struct {
		field string
		list  []string
		v4    bool
	}{{"addresses.ipv4", a.IPv4, true}, {"addresses.ipv6", a.IPv6, false}} {
		if fam.list != nil && len(fam.list) == 0 {
			es.Add(fam.field, fam.field+" must not be an empty list; leave it out instead")
		}
		for i, s := range fam.list {
			if _, reason := ParseRuleNetwork(s, fam.v4); reason != "" {
				es.Add(fam.field+"["+strconv.Itoa(i)+"]", reason)
			}
		}
	}
}

// ParseRuleNetwork parses one entry of a rule's address list: an IPv4 (v4) or IPv6
// network in IP/mask form. Host bits may be set (192.0.2.167/24, as Linode's own
// examples do); the network is what matches. reason is "" when s is valid.
func ParseRuleNetwork(s string, v4 bool) (p netip.Prefix, reason string) {
	fam, example := "IPv6", "2001:db8::/64"
	if v4 {
		fam, example = "IPv4", "192.0.2.0/24"
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil && strings.Contains(s, "%"):
		return p, "'" + s + "' must not carry an IPv6 zone"
	case err != nil:
		return p, "'" + s + "' is not an " + fam + " network in IP/mask form, e.g. " + example
	case p.Addr().Is4() != v4 || p.Addr().Is4In6():
		return p, "'" + s + "' is not an " + fam + " network in IP/mask form, e.g. " + example
	}
	return p.Masked(), ""
}

// PortRange is an inclusive range of ports; a single port has First == Last.
type PortRange struct{ First, Last uint16 }

// ParsePorts parses a rule's ports: single ports and ranges separated by commas,
// each comma optionally followed by one space ("22-24, 80, 443"). Ports are 1-65535
// without leading zeros, a range's end is above its start, and the whole string has
// at most MaxRulePortPieces pieces (a range counts two). reason is "" when valid.
func ParsePorts(s string) (out []PortRange, reason string) {
	pieces := 0
	for i, item := range strings.Split(s, ",") {
		if i > 0 {
			item = strings.TrimPrefix(item, " ")
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a, ok := parsePort(lo)
		if !ok {
			return nil, "ports: '" + item + "' is not a port (1-65535, no leading zeros) or a range such as 8000-8100"
		}
		b := a
		pieces++
		if isRange {
			if b, ok = parsePort(hi); !ok {
				return nil, "ports: '" + item + "' is not a port (1-65535, no leading zeros) or a range such as 8000-8100"
			}
			if b <= a {
				return nil, "ports: the range '" + item + "' must end above where it starts"
			}
			pieces++
		}
		out = append(out, PortRange{a, b})
	}
	if pieces > MaxRulePortPieces {
		return nil, fmt.Sprintf("ports has %d pieces; at most %d are allowed (a single port is one piece, a range two)", pieces, MaxRulePortPieces)
	}
	return out, ""
}

func parsePort(s string) (uint16, bool) {
	if s == "" || s[0] == '0' || len(s) > 5 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != s {
		return 0, false
	}
	return uint16(n), true
}

// ValidateDeviceType checks the type of a device to attach.
func ValidateDeviceType(t string) Errors {
	var es Errors
	if t == "" {
		es.Add("type", "type is required: nodebalancer")
		return es
	}
	if r := deviceTypes.check("type", t); r != "" {
		es.Add("type", r+" (only NodeBalancers exist on this server)")
	}
	return es
}

// RulesFingerprint is the rule set's fingerprint: a 32-bit hash (CRC-32) of the
// rules and policies, as 8 hex digits.
func RulesFingerprint(r FirewallRules) string {
	r.Version, r.Fingerprint = 0, ""
	b, _ := json.Marshal(r) // plain structs of strings: never fails
	return fmt.Sprintf("%08x", crc32.ChecksumIEEE(b))
}

// NormalizeRules gives empty rule lists as [] rather than null, as the API shows them.
func NormalizeRules(r *FirewallRules) {
	if r.Inbound == nil {
		r.Inbound = []FirewallRule{}
	}
	if r.Outbound == nil {
		r.Outbound = []FirewallRule{}
	}
}
