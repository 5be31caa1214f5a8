package model

import "slices"

// The fields whose allowed values depend on the protocol are listed once, here.
// ValidateConfig reports a rule a config breaks; FitProtocol applies the one rule for
// a protocol change: a field the request leaves out falls back to its default when
// its stored value does not fit the new protocol, while a value the request sends is
// validated as it stands. (A client such as Linode's CCM moves a port from
// http+http_cookie to tcp by sending protocol tcp and no stickiness at all; keeping
// the stored http_cookie would make that request, and every later one, fail.)

// protocolRule ties one Config field to the protocols its value fits.
type protocolRule struct {
	// field is the request field the rule is about.
	field string
	// fits reports whether c's value of field fits c.Protocol.
	fits func(c *Config) bool
	// reason says why a value that does not fit is refused. Nil for a value that
	// only means nothing under the other protocols: sent, it is kept; left out on
	// a protocol change, it falls back to its default like the others.
	reason func(c *Config) string
	// reset sets field to the default the new protocol falls back to.
	reset func(c *Config)
}

var protocolRules = []protocolRule{
	{
		field: "proxy_protocol",
		fits: func(c *Config) bool {
			return c.Protocol == ProtocolTCP || (c.ProxyProtocol != ProxyProtocolV1 && c.ProxyProtocol != ProxyProtocolV2)
		},
		reason: func(c *Config) string { return "proxy_protocol " + string(c.ProxyProtocol) + " requires protocol tcp" },
		reset:  func(c *Config) { c.ProxyProtocol = DefaultProxyProtocol },
	},
	optionRule("algorithm", AlgorithmOptions, func(c *Config) string { return string(c.Algorithm) },
		func(c *Config) { c.Algorithm = DefaultAlgorithm }),
	optionRule("stickiness", StickinessOptions, func(c *Config) string { return string(c.Stickiness) },
		func(c *Config) { c.Stickiness = DefaultStickiness }),
	optionRule("check", CheckOptions, func(c *Config) string { return string(c.Check) },
		func(c *Config) { c.Check = DefaultCheck }),
	{
		field:  "ssl_cert",
		fits:   func(c *Config) bool { return c.Protocol == ProtocolHTTPS || c.SSLCert == "" },
		reason: func(*Config) string { return "ssl_cert is only allowed with protocol https" },
		reset:  func(c *Config) { c.SSLCert = "" },
	},
	{
		field:  "ssl_key",
		fits:   func(c *Config) bool { return c.Protocol == ProtocolHTTPS || c.SSLKey == "" },
		reason: func(*Config) string { return "ssl_key is only allowed with protocol https" },
		reset:  func(c *Config) { c.SSLKey = "" },
	},
	{
		field: "cipher_suite",
		fits:  func(c *Config) bool { return c.Protocol == ProtocolHTTPS || c.CipherSuite == DefaultCipherSuite },
		reset: func(c *Config) { c.CipherSuite = DefaultCipherSuite },
	},
}

// ProtocolBoundFields are the Config fields whose allowed values depend on the
// protocol, in the order the rules are checked.
func ProtocolBoundFields() []string {
	out := make([]string, len(protocolRules))
	for i, r := range protocolRules {
		out[i] = r.field
	}
	return out
}

// FitProtocol applies a protocol change to c, whose fields already hold the
// request's values over the stored ones: when c.Protocol differs from before, each
// protocol-bound field that sent reports as not given by the request, and whose
// value does not fit the new protocol, falls back to its default. Fields the request
// gave are left for ValidateConfig to judge. It reports the fields it reset.
func FitProtocol(c *Config, before Protocol, sent func(field string) bool) []string {
	if c.Protocol == before {
		return nil
	}
	var reset []string
	for _, r := range protocolRules {
		if !sent(r.field) && !r.fits(c) {
			r.reset(c)
			reset = append(reset, r.field)
		}
	}
	return reset
}

// checkProtocolRules adds a reason for every protocol rule c breaks.
func checkProtocolRules(es *Errors, c *Config) {
	for _, r := range protocolRules {
		if r.reason != nil && !r.fits(c) {
			es.Add(r.field, r.reason(c))
		}
	}
}

// knownProtocol reports whether p is one of the protocols; an unknown one is
// reported by its own enum check, not by every rule that depends on it.
func knownProtocol(p Protocol) bool { return slices.Contains(protocols.values, string(p)) }
