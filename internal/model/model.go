// Package model owns nodebalancer's domain: NodeBalancers, their per-port Configs and
// the backend Nodes of each Config, every enum and default, and every validation rule.
// It does no I/O: the API, CLI, console and store all take their rules from here, so a
// reason shown to a user is worded once.
package model

import "time"

// NodeBalancer is one load balancer: a frontend address and a set of per-port Configs.
type NodeBalancer struct {
	ID                 int    `json:"id"`
	Label              string `json:"label"`
	Region             string `json:"region"`
	IPv4               string `json:"ipv4"`
	IPv6               string `json:"ipv6,omitempty"` // "" when the frontend pool has no IPv6 network
	ClientConnThrottle int    `json:"client_conn_throttle"`
	// ClientUDPSessThrottle limits new UDP sessions per second per client address
	// across the NodeBalancer's udp configs; 0 is off.
	ClientUDPSessThrottle int       `json:"client_udp_sess_throttle"`
	Tags                  []string  `json:"tags"`
	Type                  Type      `json:"type"`
	Created               time.Time `json:"created"`
	Updated               time.Time `json:"updated"`
}

// Config is the configuration of one inbound port of a NodeBalancer.
type Config struct {
	ID             int           `json:"id"`
	NodeBalancerID int           `json:"nodebalancer_id"`
	Port           int           `json:"port"`
	Protocol       Protocol      `json:"protocol"`
	Algorithm      Algorithm     `json:"algorithm"`
	Stickiness     Stickiness    `json:"stickiness"`
	Check          Check         `json:"check"`
	CheckInterval  int           `json:"check_interval"`
	CheckTimeout   int           `json:"check_timeout"`
	CheckAttempts  int           `json:"check_attempts"`
	CheckPath      string        `json:"check_path"`
	CheckBody      string        `json:"check_body"`
	CheckPassive   bool          `json:"check_passive"`
	ProxyProtocol  ProxyProtocol `json:"proxy_protocol"`
	CipherSuite    CipherSuite   `json:"cipher_suite"`
	// UDPCheckPort is the node port the active checks of a udp config use (over TCP).
	// It is stored and shown on every config, as on Linode (Terraform always sends it).
	UDPCheckPort int    `json:"udp_check_port"`
	SSLCert      string `json:"ssl_cert,omitempty"`
	SSLKey       string `json:"ssl_key,omitempty"`
}

// Node is one backend of a Config.
type Node struct {
	ID             int    `json:"id"`
	ConfigID       int    `json:"config_id"`
	NodeBalancerID int    `json:"nodebalancer_id"`
	Label          string `json:"label"`
	Address        string `json:"address"`
	Weight         int    `json:"weight"`
	Mode           Mode   `json:"mode"`
}

// ConfigWithNodes is a Config together with its Nodes, the unit the data plane and the
// rebuild endpoint work with.
type ConfigWithNodes struct {
	Config
	Nodes []Node `json:"nodes"`
}

// ReservedIP is a frontend address kept aside, as Linode's reserved IPv4 addresses
// are: a NodeBalancer created with it as its ipv4 uses it, it outlives that
// NodeBalancer, and no NodeBalancer is given it unless it asks for it by address.
// Which NodeBalancer uses it is not stored here: it is whichever has it as ipv4.
type ReservedIP struct {
	Address string    `json:"address"`
	Region  string    `json:"region"`
	Tags    []string  `json:"tags"`
	Created time.Time `json:"created"`
}

// Token is a personal access token. Only the SHA-256 hash of the secret is kept.
type Token struct {
	ID      int        `json:"id"`
	Label   string     `json:"label"`
	Scopes  string     `json:"scopes"`
	Hash    string     `json:"hash"`
	Prefix  string     `json:"prefix"`
	Created time.Time  `json:"created"`
	Expiry  *time.Time `json:"expiry,omitempty"`
}

// Defaults for fields a request may omit, as Linode documents them.
const (
	DefaultPort          = 80
	DefaultProtocol      = ProtocolHTTP
	DefaultAlgorithm     = AlgorithmRoundRobin
	DefaultStickiness    = StickinessNone
	DefaultCheck         = CheckNone
	DefaultCheckInterval = 31
	DefaultCheckTimeout  = 30
	DefaultCheckAttempts = 3
	DefaultCheckPassive  = true
	DefaultProxyProtocol = ProxyProtocolNone
	DefaultCipherSuite   = CipherRecommended
	DefaultUDPCheckPort  = 80
	DefaultWeight        = 50
	DefaultMode          = ModeAccept
	DefaultType          = TypeCommon
)

// NewConfig returns a Config holding every default.
func NewConfig() Config {
	return Config{
		Port:          DefaultPort,
		Protocol:      DefaultProtocol,
		Algorithm:     DefaultAlgorithm,
		Stickiness:    DefaultStickiness,
		Check:         DefaultCheck,
		CheckInterval: DefaultCheckInterval,
		CheckTimeout:  DefaultCheckTimeout,
		CheckAttempts: DefaultCheckAttempts,
		CheckPassive:  DefaultCheckPassive,
		ProxyProtocol: DefaultProxyProtocol,
		CipherSuite:   DefaultCipherSuite,
		UDPCheckPort:  DefaultUDPCheckPort,
	}
}

// UDPSessionTimeout is the read-only udp_session_timeout every config shows: the idle
// seconds after which a UDP session ends. 2 is what the live API shows (linode_api4's
// integration test expects it); the data plane ends idle udp sessions after it.
const UDPSessionTimeout = 2

// FillStoredDefaults gives fields added after c was stored their defaults: a config
// stored before udp_check_port existed reads back with 80, not 0.
func (c *Config) FillStoredDefaults() {
	if c.UDPCheckPort == 0 {
		c.UDPCheckPort = DefaultUDPCheckPort
	}
}

// NewNode returns a Node holding every default.
func NewNode() Node {
	return Node{Weight: DefaultWeight, Mode: DefaultMode}
}
