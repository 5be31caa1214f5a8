package model

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// FieldError is one reason a request was refused. Field names the request field,
// dotted for nested fields ("configs[0].nodes[1].weight"); it is empty when the reason
// is not about one field.
type FieldError struct {
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// Error implements error.
func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Errors is every reason a request was refused, reported together so a user can fix
// them all at once.
type Errors []FieldError

// Error implements error.
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Add records a reason against field.
func (es *Errors) Add(field, reason string) { *es = append(*es, FieldError{field, reason}) }

// Merge adds every error of other, each field prefixed with prefix and a dot.
func (es *Errors) Merge(prefix string, other Errors) {
	for _, e := range other {
		f := e.Field
		if prefix != "" {
			if f == "" {
				f = prefix
			} else {
				f = prefix + "." + f
			}
		}
		*es = append(*es, FieldError{f, e.Reason})
	}
}

// Err returns es as an error, or nil when it is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Ranges of the numeric fields, shared by validation and by clients that show them.
const (
	MinLabel, MaxLabel             = 3, 32
	MinThrottle, MaxThrottle       = 0, 20
	MinPort, MaxPort               = 1, 65535
	MinCheckTimeout, MaxTimeout    = 1, 30
	MinCheckInterval, MaxInterval  = 2, 3600
	MinCheckAttempts, MaxAttempts  = 1, 30
	MinWeight, MaxWeight           = 1, 255
	MinTag, MaxTag                 = 3, 50
	MaxTags                        = 64
	MaxCheckBody, MaxCheckPath     = 1024, 1024
	MaxPEM                         = 64 << 10
	MaxConfigsPerNB, MaxNodesPerCf = 100, 1000
)

var (
	nbLabelRE   = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	nodeLabelRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)
	checkPathRE = regexp.MustCompile(`^[a-zA-Z0-9/\-%?&=.]*$`)
)

func checkRange(es *Errors, field string, v, lo, hi int) {
	if v < lo || v > hi {
		es.Add(field, fmt.Sprintf("%s must be between %d and %d", field, lo, hi))
	}
}

func checkLabel(es *Errors, field, v string, re *regexp.Regexp, allowed string) {
	switch {
	case len(v) < MinLabel || len(v) > MaxLabel:
		es.Add(field, fmt.Sprintf("%s must be %d-%d characters", field, MinLabel, MaxLabel))
	case !re.MatchString(v):
		es.Add(field, field+" must only use "+allowed)
	}
}

func checkEnum(es *Errors, field string, e enum, v string) {
	if r := e.check(field, v); r != "" {
		es.Add(field, r)
	}
}

// Policy carries the server-wide settings validation depends on.
type Policy struct {
	// Region is the only region this server serves.
	Region string
	// BackendRanges are the networks node addresses must fall in.
	BackendRanges []netip.Prefix
}

// ValidateNodeBalancer checks every field of nb that a client sets.
func ValidateNodeBalancer(nb *NodeBalancer, p Policy) Errors {
	var es Errors
	checkLabel(&es, "label", nb.Label, nbLabelRE, "letters, digits, '-' and '_'")
	if nb.Region != p.Region {
		es.Add("region", fmt.Sprintf("region must be '%s', the only region this server serves", p.Region))
	}
	checkRange(&es, "client_conn_throttle", nb.ClientConnThrottle, MinThrottle, MaxThrottle)
	checkRange(&es, "client_udp_sess_throttle", nb.ClientUDPSessThrottle, MinThrottle, MaxThrottle)
	checkEnum(&es, "type", types, string(nb.Type))
	checkTags(&es, nb.Tags)
	return es
}

// ValidateReservedIP checks the fields of r a client sets: its region and tags (the
// address is the store's to check against the frontend pool).
func ValidateReservedIP(r *ReservedIP, p Policy) Errors {
	var es Errors
	switch r.Region {
	case "":
		es.Add("region", "region is required")
	case p.Region:
	default:
		es.Add("region", fmt.Sprintf("region must be '%s', the only region this server serves", p.Region))
	}
	checkTags(&es, r.Tags)
	return es
}

// checkTags checks a list of tags, as NodeBalancers and reserved addresses carry.
func checkTags(es *Errors, tags []string) {
	if len(tags) > MaxTags {
		es.Add("tags", fmt.Sprintf("at most %d tags", MaxTags))
	}
	seen := map[string]bool{}
	for i, t := range tags {
		f := "tags[" + strconv.Itoa(i) + "]"
		switch {
		case len(t) < MinTag || len(t) > MaxTag:
			es.Add(f, fmt.Sprintf("a tag must be %d-%d characters", MinTag, MaxTag))
		case strings.ContainsFunc(t, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			es.Add(f, "a tag must not contain control characters")
		case seen[t]:
			es.Add(f, "tag '"+t+"' is listed twice")
		}
		seen[t] = true
	}
}

// ValidateConfig checks every field of c and the rules between them. Port uniqueness
// needs the other configs and is the store's to check.
func ValidateConfig(c *Config) Errors {
	var es Errors
	checkRange(&es, "port", c.Port, MinPort, MaxPort)
	checkRange(&es, "udp_check_port", c.UDPCheckPort, MinPort, MaxPort)
	checkEnum(&es, "protocol", protocols, string(c.Protocol))
	checkEnum(&es, "algorithm", enum{values: AlgorithmValues()}, string(c.Algorithm))
	checkEnum(&es, "stickiness", enum{values: StickinessValues()}, string(c.Stickiness))
	checkEnum(&es, "check", enum{values: CheckValues()}, string(c.Check))
	checkEnum(&es, "proxy_protocol", proxyProtocols, string(c.ProxyProtocol))
	checkEnum(&es, "cipher_suite", cipherSuites, string(c.CipherSuite))
	checkRange(&es, "check_timeout", c.CheckTimeout, MinCheckTimeout, MaxTimeout)
	checkRange(&es, "check_attempts", c.CheckAttempts, MinCheckAttempts, MaxAttempts)
	checkRange(&es, "check_interval", c.CheckInterval, MinCheckInterval, MaxInterval)
	if c.CheckInterval <= c.CheckTimeout {
		es.Add("check_interval", "check_interval must be greater than check_timeout")
	}
	if len(c.CheckPath) > MaxCheckPath {
		es.Add("check_path", fmt.Sprintf("check_path must be at most %d characters", MaxCheckPath))
	} else if !checkPathRE.MatchString(c.CheckPath) {
		es.Add("check_path", "check_path must only use letters, digits and / - % ? & = .")
	} else if c.CheckPath != "" && !strings.HasPrefix(c.CheckPath, "/") {
		es.Add("check_path", "check_path must start with /")
	}
	if len(c.CheckBody) > MaxCheckBody {
		es.Add("check_body", fmt.Sprintf("check_body must be at most %d characters", MaxCheckBody))
	} else if _, err := regexp.Compile(c.CheckBody); err != nil {
		es.Add("check_body", "check_body is not a valid regular expression: "+strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	if ci, ok := LookupCheck(c.Check); ok && ci.UsesBody && c.CheckBody == "" {
		es.Add("check_body", "check_body is required when check is "+string(c.Check))
	}
	checkProtocolRules(&es, c)
	validateTLS(&es, c)
	return es
}

// validateTLS checks the certificate and key of an https config (protocolRules
// refuses them on the other protocols).
func validateTLS(es *Errors, c *Config) {
	if c.Protocol != ProtocolHTTPS {
		return
	}
	certOK := checkPEMField(es, "ssl_cert", c.SSLCert)
	keyOK := checkPEMField(es, "ssl_key", c.SSLKey)
	if !certOK || !keyOK {
		return
	}
	if _, err := ParseCertificate(c.SSLCert); err != nil {
		es.Add("ssl_cert", err.Error())
		return
	}
	if _, err := KeyPair(c.SSLCert, c.SSLKey); err != nil {
		es.Add("ssl_key", err.Error())
	}
}

// checkPEMField reports whether a required PEM field is present and not oversized.
func checkPEMField(es *Errors, field, v string) bool {
	switch {
	case v == "":
		es.Add(field, field+" is required with protocol https")
	case len(v) > MaxPEM:
		es.Add(field, fmt.Sprintf("%s must be at most %d bytes", field, MaxPEM))
	default:
		return true
	}
	return false
}

// ValidateNode checks every field of n that a client sets.
func ValidateNode(n *Node, p Policy) Errors {
	var es Errors
	checkLabel(&es, "label", n.Label, nodeLabelRE, "letters, digits, '-', '_' and '.'")
	if r := CheckAddress(n.Address, p.BackendRanges); r != "" {
		es.Add("address", r)
	}
	checkRange(&es, "weight", n.Weight, MinWeight, MaxWeight)
	checkEnum(&es, "mode", modes, string(n.Mode))
	return es
}

// CheckAddress returns why addr is not a usable node address ("" when it is): it must
// be ip:port with a port of 1-65535 and an ip inside one of ranges.
func CheckAddress(addr string, ranges []netip.Prefix) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "address must be ip:port, e.g. 192.168.1.10:80 or [fd00::10]:80"
	}
	if ap.Port() == 0 {
		return "address port must be between 1 and 65535"
	}
	ip := ap.Addr().Unmap()
	if ip.Zone() != "" {
		return "address must not carry an IPv6 zone"
	}
	for _, r := range ranges {
		if r.Contains(ip) {
			return ""
		}
	}
	return fmt.Sprintf("address %s is outside the allowed backend ranges (%s)", ip, rangesString(ranges))
}

func rangesString(ranges []netip.Prefix) string {
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}

// DefaultBackendRanges are the private and loopback networks node addresses may use
// unless the operator says otherwise.
func DefaultBackendRanges() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("fc00::/7"),
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
	}
}
