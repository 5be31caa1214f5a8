package model

import "slices"

// Protocol is what a Config's port speaks.
type Protocol string

// Protocols.
const (
	ProtocolHTTP  Protocol = "http"
	ProtocolHTTPS Protocol = "https"
	ProtocolTCP   Protocol = "tcp"
	ProtocolUDP   Protocol = "udp"
)

// PortSpace names the set of configs among which a NodeBalancer's ports must be
// unique: "tcp" for tcp, http and https (they share TCP ports) and "udp" for udp. As
// on Linode, a udp config may use the port number of a tcp, http or https config.
func (p Protocol) PortSpace() string {
	if p == ProtocolUDP {
		return "udp"
	}
	return "tcp"
}

// Algorithm is how a Config chooses a node for a new client.
type Algorithm string

// Algorithms.
const (
	AlgorithmRoundRobin Algorithm = "roundrobin"
	AlgorithmLeastConn  Algorithm = "leastconn"
	AlgorithmSource     Algorithm = "source"
	AlgorithmRingHash   Algorithm = "ring_hash"
)

// Stickiness is how a Config keeps a client on one node.
type Stickiness string

// Stickiness kinds.
const (
	StickinessNone       Stickiness = "none"
	StickinessTable      Stickiness = "table"
	StickinessHTTPCookie Stickiness = "http_cookie"
	StickinessSession    Stickiness = "session"
	StickinessSourceIP   Stickiness = "source_ip"
)

// Check is the kind of active health check a Config runs against its nodes.
type Check string

// Health check kinds.
const (
	CheckNone       Check = "none"
	CheckConnection Check = "connection"
	CheckHTTP       Check = "http"
	CheckHTTPBody   Check = "http_body"
)

// ProxyProtocol is the PROXY protocol version a tcp Config sends to its nodes.
type ProxyProtocol string

// PROXY protocol versions.
const (
	ProxyProtocolNone ProxyProtocol = "none"
	ProxyProtocolV1   ProxyProtocol = "v1"
	ProxyProtocolV2   ProxyProtocol = "v2"
)

// CipherSuite selects the TLS cipher suites of an https Config.
type CipherSuite string

// Cipher suite sets.
const (
	CipherRecommended CipherSuite = "recommended"
	CipherLegacy      CipherSuite = "legacy"
)

// Mode decides what traffic a node may take.
type Mode string

// Node modes.
const (
	ModeAccept Mode = "accept"
	ModeReject Mode = "reject"
	ModeDrain  Mode = "drain"
	ModeBackup Mode = "backup"
)

// Type is a NodeBalancer's plan type.
type Type string

// Plan types.
const (
	TypeCommon  Type = "common"
	TypePremium Type = "premium"
)

// NodeStatus is a node's health as the checker sees it.
type NodeStatus string

// Node statuses, spelled as the API shows them. Unknown (capital U, as the live API
// and linode-cli's tests show it) is a node without a verdict: not checked yet, or
// under check none with no passive failure. It receives traffic as an UP node does.
const (
	StatusUnknown NodeStatus = "Unknown"
	StatusUp      NodeStatus = "UP"
	StatusDown    NodeStatus = "DOWN"
)

// enum describes the values a field takes: the ones implemented, and values newer
// Linode clients know that nodebalancer refuses by name rather than silently ignoring.
type enum struct {
	values       []string
	notSupported []string
}

var (
	protocols      = enum{values: []string{"http", "https", "tcp", "udp"}}
	proxyProtocols = enum{values: []string{"none", "v1", "v2"}}
	cipherSuites   = enum{values: []string{"recommended", "legacy"}}
	modes          = enum{values: []string{"accept", "reject", "drain", "backup"}}
	types          = enum{values: []string{"common", "premium"}, notSupported: []string{"premium_40gb"}}
)

// check returns "" when v is allowed, else the reason it is not.
func (e enum) check(field, v string) string {
	if slices.Contains(e.values, v) {
		return ""
	}
	if slices.Contains(e.notSupported, v) {
		return field + " '" + v + "' is not supported by this server; use one of " + e.list()
	}
	return field + " must be one of " + e.list()
}

func (e enum) list() string {
	s := ""
	for i, v := range e.values {
		if i > 0 {
			s += ", "
		}
		s += v
	}
	return s
}

// Values of each fixed enum, in documentation order, for clients that offer choices.
// Algorithms, check types and stickiness kinds are in the registry (registry.go).
var (
	ProtocolValues      = protocols.values
	ProxyProtocolValues = proxyProtocols.values
	CipherSuiteValues   = cipherSuites.values
	ModeValues          = modes.values
	TypeValues          = types.values
)

// AlgorithmValues returns the registered algorithms' names, in registration order.
func AlgorithmValues() []string { return optionValues(AlgorithmOptions()) }

// CheckValues returns the registered check types' names, in registration order.
func CheckValues() []string { return optionValues(CheckOptions()) }

// StickinessValues returns the stickiness kinds, in documentation order.
func StickinessValues() []string { return optionValues(stickinessOptions) }
