package model

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// The registry of balancing algorithms and health check types: what the API accepts,
// with which protocols, and how the CLI and the console name them. Everything that
// lists them (validation and its error texts, the protocol rules, the CLI's flag help,
// the console's choices) reads it, so a new algorithm or check type is described once,
// where it is implemented: balance.Register and health.Register call RegisterAlgorithm
// and RegisterCheck from an init function of the implementation's file.
//
// Linode's own algorithms and checks are described here rather than beside their
// implementations because the API must know them in a process that does not link
// the data plane (the API's and the store's tests); their files in balance and
// health register only the implementation.

// Option is one value of an enum field as clients offer it.
type Option struct {
	// Value is the API spelling, such as "roundrobin".
	Value string `json:"value"`
	// Label is the name the console shows, as Cloud Manager spells it.
	Label string `json:"label"`
	// Protocols are the config protocols the value is available with; none means
	// every protocol.
	Protocols []Protocol `json:"protocols,omitempty"`
}

// allows reports whether o is available with protocol p.
func (o Option) allows(p Protocol) bool {
	return len(o.Protocols) == 0 || slices.Contains(o.Protocols, p)
}

// AlgorithmInfo describes a balancing algorithm.
type AlgorithmInfo struct {
	Name Algorithm
	// Label is the console's name for it ("Round Robin").
	Label string
	// Protocols are the protocols it balances; none means every protocol.
	Protocols []Protocol
}

// CheckInfo describes an active health check type.
type CheckInfo struct {
	Name Check
	// Label is the console's name for it ("HTTP Status").
	Label string
	// Protocols are the protocols whose configs may use it; none means every one.
	Protocols []Protocol
	// UsesPath: the check requests check_path, so clients offer that field.
	UsesPath bool
	// UsesBody: the check matches check_body, which is then required.
	UsesBody bool
}

// registry holds what has been registered, in registration order (the order error
// messages and clients list the values in).
var registry struct {
	mu         sync.RWMutex
	algorithms []AlgorithmInfo
	checks     []CheckInfo
}

// nameRE is what a registered name looks like: the API's enum spellings are lower
// case words joined by '_'.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// checkRegistration panics on a name that is malformed, already taken or not given a
// label, or on an unknown protocol: a programming error, found at start.
func checkRegistration(kind, name, label string, protocols []Protocol, taken bool) {
	switch {
	case !nameRE.MatchString(name):
		panic(fmt.Sprintf("model: %s name %q must be lower case letters, digits and '_'", kind, name))
	case taken:
		panic(fmt.Sprintf("model: %s %q registered twice", kind, name))
	case label == "":
		panic(fmt.Sprintf("model: %s %q has no label", kind, name))
	}
	for _, p := range protocols {
		if !knownProtocol(p) {
			panic(fmt.Sprintf("model: %s %q names unknown protocol %q", kind, name, p))
		}
	}
}

// RegisterAlgorithm adds a balancing algorithm to what the API accepts. Call it from
// an init function (balance.Register does); it panics on a malformed or duplicate
// name.
func RegisterAlgorithm(a AlgorithmInfo) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	_, taken := lookupAlgorithm(a.Name)
	checkRegistration("algorithm", string(a.Name), a.Label, a.Protocols, taken)
	a.Protocols = slices.Clone(a.Protocols)
	registry.algorithms = append(registry.algorithms, a)
}

// RegisterCheck adds a health check type to what the API accepts. Call it from an
// init function (health.Register does); it panics on a malformed or duplicate name.
func RegisterCheck(c CheckInfo) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	_, taken := lookupCheck(c.Name)
	checkRegistration("check", string(c.Name), c.Label, c.Protocols, taken)
	c.Protocols = slices.Clone(c.Protocols)
	registry.checks = append(registry.checks, c)
}

func lookupAlgorithm(name Algorithm) (AlgorithmInfo, bool) {
	i := slices.IndexFunc(registry.algorithms, func(a AlgorithmInfo) bool { return a.Name == name })
	if i < 0 {
		return AlgorithmInfo{}, false
	}
	return registry.algorithms[i], true
}

func lookupCheck(name Check) (CheckInfo, bool) {
	i := slices.IndexFunc(registry.checks, func(c CheckInfo) bool { return c.Name == name })
	if i < 0 {
		return CheckInfo{}, false
	}
	return registry.checks[i], true
}

// LookupAlgorithm returns the description of a registered algorithm.
func LookupAlgorithm(name Algorithm) (AlgorithmInfo, bool) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return lookupAlgorithm(name)
}

// LookupCheck returns the description of a registered check type.
func LookupCheck(name Check) (CheckInfo, bool) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return lookupCheck(name)
}

// Algorithms returns every registered algorithm, in registration order.
func Algorithms() []AlgorithmInfo {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return slices.Clone(registry.algorithms)
}

// Checks returns every registered check type, in registration order.
func Checks() []CheckInfo {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return slices.Clone(registry.checks)
}

// AlgorithmOptions returns the algorithms as clients offer them.
func AlgorithmOptions() []Option {
	as := Algorithms()
	out := make([]Option, len(as))
	for i, a := range as {
		out[i] = Option{Value: string(a.Name), Label: a.Label, Protocols: a.Protocols}
	}
	return out
}

// CheckOptions returns the check types as clients offer them.
func CheckOptions() []Option {
	cs := Checks()
	out := make([]Option, len(cs))
	for i, c := range cs {
		out[i] = Option{Value: string(c.Name), Label: c.Label, Protocols: c.Protocols}
	}
	return out
}

// StickinessOptions returns the stickiness kinds as clients offer them.
func StickinessOptions() []Option { return slices.Clone(stickinessOptions) }

// Linode's algorithms, check types and stickiness kinds.
func init() {
	notUDP := []Protocol{ProtocolHTTP, ProtocolHTTPS, ProtocolTCP}
	RegisterAlgorithm(AlgorithmInfo{Name: AlgorithmRoundRobin, Label: "Round Robin"})
	RegisterAlgorithm(AlgorithmInfo{Name: AlgorithmLeastConn, Label: "Least Connections"})
	RegisterAlgorithm(AlgorithmInfo{Name: AlgorithmSource, Label: "Source", Protocols: notUDP})
	RegisterAlgorithm(AlgorithmInfo{Name: AlgorithmRingHash, Label: "Ring Hash", Protocols: []Protocol{ProtocolUDP}})

	RegisterCheck(CheckInfo{Name: CheckNone, Label: "None"})
	RegisterCheck(CheckInfo{Name: CheckConnection, Label: "TCP Connection"})
	RegisterCheck(CheckInfo{Name: CheckHTTP, Label: "HTTP Status", UsesPath: true})
	RegisterCheck(CheckInfo{Name: CheckHTTPBody, Label: "HTTP Body", UsesPath: true, UsesBody: true})
}

// stickinessOptions are the stickiness kinds (not an extension point: each needs its
// own code in the data plane) with the protocols each is available with.
var stickinessOptions = []Option{
	{Value: string(StickinessNone), Label: "None"},
	{Value: string(StickinessTable), Label: "Table", Protocols: []Protocol{ProtocolHTTP, ProtocolHTTPS, ProtocolTCP}},
	{Value: string(StickinessHTTPCookie), Label: "HTTP Cookie", Protocols: []Protocol{ProtocolHTTP, ProtocolHTTPS}},
	{Value: string(StickinessSession), Label: "Session", Protocols: []Protocol{ProtocolUDP}},
	{Value: string(StickinessSourceIP), Label: "Source IP", Protocols: []Protocol{ProtocolUDP}},
}

// optionValues returns the values of os.
func optionValues(os []Option) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.Value
	}
	return out
}

// optionFor returns the option of value v, if any.
func optionFor(os []Option, v string) (Option, bool) {
	i := slices.IndexFunc(os, func(o Option) bool { return o.Value == v })
	if i < 0 {
		return Option{}, false
	}
	return os[i], true
}

// ValuesFor returns the values of os available with protocol p, in order.
func ValuesFor(os []Option, p Protocol) []string {
	var out []string
	for _, o := range os {
		if o.allows(p) {
			out = append(out, o.Value)
		}
	}
	return out
}

// orList spells values as "a", "a or b", "a, b or c".
func orList[T ~string](vs []T) string {
	var b strings.Builder
	for i, v := range vs {
		switch {
		case i == 0:
		case i == len(vs)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(v))
	}
	return b.String()
}

// protocolReason says why field's value o is refused with protocol p: a value of
// one or two protocols "requires protocol x [or y]"; one of more protocols "is not
// available with protocol p" and names the values that are.
func protocolReason(field string, os []Option, o Option, p Protocol) string {
	if len(o.Protocols) <= 2 {
		return field + " " + o.Value + " requires protocol " + orList(o.Protocols)
	}
	return field + " " + o.Value + " is not available with protocol " + string(p) + "; use " + orList(ValuesFor(os, p))
}

// optionRule is the protocol rule of an enum field whose values are options: a
// value fits when its option allows the config's protocol. An unknown value or
// protocol fits (its own enum check reports it).
func optionRule(field string, options func() []Option, get func(c *Config) string, reset func(c *Config)) protocolRule {
	fits := func(c *Config) bool {
		o, ok := optionFor(options(), get(c))
		return !ok || !knownProtocol(c.Protocol) || o.allows(c.Protocol)
	}
	return protocolRule{
		field: field,
		fits:  fits,
		reason: func(c *Config) string {
			os := options()
			o, _ := optionFor(os, get(c))
			return protocolReason(field, os, o, c.Protocol)
		},
		reset: reset,
	}
}
