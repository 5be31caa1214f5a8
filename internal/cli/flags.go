package cli

import (
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Object fields as flags: each flag is named after the API field it sets, and a
// request body carries only the flags the user gave, so an update changes exactly
// what was asked.

// fieldKind is how a flag's value becomes a JSON value.
type fieldKind uint8

const (
	kindString fieldKind = iota
	kindInt
	kindBool
	kindList // repeatable; a single empty value means the empty list
	kindPEM  // a PEM value, or @file to read one
)

// field is one API field offered as a flag.
type field struct {
	name   string
	kind   fieldKind
	usage  string
	values []string // completions of an enum field
}

// enumValues spells an enum's values for completion.
func enumValues[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Fields of each object, as the API names them.
var (
	fLabel       = field{name: "label", usage: "label: 3-32 letters, digits, '-' or '_'"}
	fThrottle    = field{name: "client_conn_throttle", kind: kindInt, usage: "new connections per second per client address, 0-20 (0: off)"}
	fTags        = field{name: "tags", kind: kindList, usage: "a tag (repeat for several; --tags '' for none)"}
	fUDPThrottle = field{name: "client_udp_sess_throttle", kind: kindInt,
		usage: "new UDP sessions per second per client address, 0-20 (0: off)"}

	nbCreateFields = []field{fLabel,
		{name: "region", usage: "region (the server's own region by default)"},
		fThrottle, fUDPThrottle, fTags,
		{name: "type", usage: "plan type", values: enumValues(model.TypeCommon, model.TypePremium)},
	}
	nbUpdateFields = []field{fLabel, fThrottle, fUDPThrottle, fTags}

	// configFieldsFixed are the config fields whose help does not depend on the
	// registered algorithms and check types; configFields adds those.
	configFieldsFixed = []field{
		{name: "port", kind: kindInt, usage: "inbound port, 1-65535 (80)"},
		{name: "protocol", usage: "http, https, tcp or udp (http)", values: enumValues(model.ProtocolHTTP, model.ProtocolHTTPS, model.ProtocolTCP, model.ProtocolUDP)},
		{name: "algorithm"},
		{name: "stickiness", usage: "none; table or http_cookie (tcp/http/https); session or source_ip (udp) (none)"},
		{name: "udp_check_port", kind: kindInt, usage: "node port the health checks of a udp config connect to over TCP, 1-65535 (80)"},
		{name: "check"},
		{name: "check_interval", kind: kindInt, usage: "seconds between checks, more than check_timeout (31)"},
		{name: "check_timeout", kind: kindInt, usage: "seconds a check may take, 1-30 (30)"},
		{name: "check_attempts", kind: kindInt, usage: "failed checks before a node is DOWN, 1-30 (3)"},
		{name: "check_path"},
		{name: "check_body"},
		{name: "check_passive", kind: kindBool, usage: "count failures of live traffic against a node (true; --check_passive=false to turn off)"},
		{name: "proxy_protocol", usage: "PROXY protocol to the nodes: none, v1 or v2 (tcp only)",
			values: enumValues(model.ProxyProtocolNone, model.ProxyProtocolV1, model.ProxyProtocolV2)},
		{name: "cipher_suite", usage: "recommended or legacy (https only)", values: enumValues(model.CipherRecommended, model.CipherLegacy)},
		{name: "ssl_cert", kind: kindPEM, usage: "PEM certificate chain, or @file (https only)"},
		{name: "ssl_key", kind: kindPEM, usage: "PEM private key, or @file (https only)"},
	}

	nodeFields = []field{
		{name: "label", usage: "label: 3-32 letters, digits, '.', '-' or '_'"},
		{name: "address", usage: "ip:port of the backend, e.g. 192.168.1.10:80"},
		{name: "weight", kind: kindInt, usage: "share of new connections, 1-255 (50)"},
		{name: "mode", usage: "accept, reject, drain or backup (accept)",
			values: enumValues(model.ModeAccept, model.ModeReject, model.ModeDrain, model.ModeBackup)},
	}
)

// addFields registers fields as flags of cmd, with completions for enum values.
func addFields(cmd *cobra.Command, fields []field) {
	fs := cmd.Flags()
	for _, f := range fields {
		switch f.kind {
		case kindInt:
			fs.Int(f.name, 0, f.usage)
		case kindBool:
			fs.Bool(f.name, false, f.usage)
		case kindList:
			fs.StringArray(f.name, nil, f.usage)
		default:
			fs.String(f.name, "", f.usage)
		}
		if f.values != nil {
			vals := f.values
			_ = cmd.RegisterFlagCompletionFunc(f.name, cobra.FixedCompletions(vals, cobra.ShellCompDirectiveNoFileComp))
		}
	}
}

// bodyFromFlags returns the JSON body of the fields the user gave.
func bodyFromFlags(fs *pflag.FlagSet, fields []field) (map[string]any, error) {
	body := map[string]any{}
	for _, f := range fields {
		if !fs.Changed(f.name) {
			continue
		}
		var v any
		var err error
		switch f.kind {
		case kindInt:
			v, err = fs.GetInt(f.name)
		case kindBool:
			v, err = fs.GetBool(f.name)
		case kindList:
			var vals []string
			vals, err = fs.GetStringArray(f.name)
			list := []string{}
			for _, s := range vals {
				if s != "" {
					list = append(list, s)
				}
			}
			v = list
		case kindPEM:
			var s string
			if s, err = fs.GetString(f.name); err == nil {
				v, err = readPEMFlag(f.name, s)
			}
		default:
			v, err = fs.GetString(f.name)
		}
		if err != nil {
			return nil, err
		}
		body[f.name] = v
	}
	return body, nil
}

// maxPEMFile bounds what @file reads; the API refuses anything past model.MaxPEM.
const maxPEMFile = 1 << 20

// readPEMFlag returns a PEM flag's value: the text given, or the file named after @.
func readPEMFlag(name, v string) (string, error) {
	path, ok := strings.CutPrefix(v, "@")
	if !ok {
		return v, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", usageErrorf("--%s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return "", usageErrorf("--%s: %v", name, err)
	}
	if len(b) > maxPEMFile {
		return "", usageErrorf("--%s: %s is larger than %d KB: is it a PEM file?", name, path, maxPEMFile>>10)
	}
	return string(b), nil
}

// nodeSpecKeys are the keys a --node value may give.
const nodeSpecKeys = "id, label, address, weight, mode"

// nodeFlagUsage documents --node.
const nodeFlagUsage = "a node as 'label=web1,address=192.168.1.10:80,weight=50,mode=accept[,id=12]' (repeat per node)"

// parseNodeSpec reads one --node value: comma-separated key=value pairs of the node's
// fields; id names an existing node to keep (its other fields keep their values
// unless given).
func parseNodeSpec(s string) (map[string]any, error) {
	n := map[string]any{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, usageErrorf("--node %q: %q is not key=value (keys: %s)", s, part, nodeSpecKeys)
		}
		k = strings.TrimSpace(k)
		if _, dup := n[k]; dup {
			return nil, usageErrorf("--node %q: %s is given twice", s, k)
		}
		switch k {
		case "id", "weight":
			num, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return nil, usageErrorf("--node %q: %s must be a number (got %q)", s, k, v)
			}
			if k == "id" && num <= 0 {
				return nil, usageErrorf("--node %q: id must be a positive number", s)
			}
			n[k] = num
		case "label", "address", "mode":
			n[k] = v
		default:
			return nil, usageErrorf("--node %q: unknown key %q (keys: %s)", s, k, nodeSpecKeys)
		}
	}
	if len(n) == 0 {
		return nil, usageErrorf("--node must give at least one of %s", nodeSpecKeys)
	}
	return n, nil
}

// nodesFromFlag parses every --node value.
func nodesFromFlag(fs *pflag.FlagSet) ([]map[string]any, error) {
	specs, err := fs.GetStringArray("node")
	if err != nil {
		return nil, err
	}
	nodes := make([]map[string]any, 0, len(specs))
	for _, s := range specs {
		n, err := parseNodeSpec(s)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// expiryValue turns --expiry into the API's form: a duration from now ("30d",
// "12h") becomes a UTC time; anything else goes to the API as given, which accepts
// YYYY-MM-DDTHH:MM:SS (UTC) and RFC 3339 and says why when it refuses.
func expiryValue(s string, now time.Time) (string, error) {
	d, ok := parseLifetime(s)
	if !ok {
		return s, nil
	}
	if d <= 0 {
		return "", usageErrorf("--expiry %q must be in the future", s)
	}
	return now.Add(d).UTC().Format("2006-01-02T15:04:05"), nil
}

// parseLifetime reads a Go duration or a number of days ("30d").
func parseLifetime(s string) (time.Duration, bool) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100*365 || n < -100*365 {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// fieldNames lists the flags of fields, for messages.
func fieldNames(fields []field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = "--" + f.name
	}
	return strings.Join(names, ", ")
}

// noChanges is the error of an update given nothing to change.
func noChanges(fields []field) error {
	return usageErrorf("nothing to change: give at least one of %s", fieldNames(fields))
}

// configFields returns the config fields, with the help and completions of
// algorithm, stickiness and the check fields read from model's registry: an
// algorithm or check type registered by its own file shows up here by itself.
func configFields() []field {
	fs := slices.Clone(configFieldsFixed)
	var pathChecks, bodyChecks []string
	for _, c := range model.Checks() {
		if c.UsesPath {
			pathChecks = append(pathChecks, string(c.Name))
		}
		if c.UsesBody {
			bodyChecks = append(bodyChecks, string(c.Name))
		}
	}
	for i := range fs {
		f := &fs[i]
		switch f.name {
		case "algorithm":
			f.usage = optionsUsage(model.AlgorithmOptions()) + " (" + string(model.DefaultAlgorithm) + ")"
			f.values = model.AlgorithmValues()
		case "stickiness":
			f.values = model.StickinessValues()
		case "check":
			f.usage = "health check: " + optionsUsage(model.CheckOptions()) + " (" + string(model.DefaultCheck) + ")"
			f.values = model.CheckValues()
		case "check_path":
			f.usage = "path the " + joinWords(pathChecks, "and") + " checks request"
		case "check_body":
			if len(bodyChecks) == 1 {
				f.usage = "regular expression the " + bodyChecks[0] + " check's response must match"
			} else {
				f.usage = "regular expression the response of the " + joinWords(bodyChecks, "and") + " checks must match"
			}
		}
	}
	return fs
}

// optionsUsage lists options as "a, b (not udp) or c (udp only)": each value with
// the protocols it is limited to.
func optionsUsage(os []model.Option) string {
	words := make([]string, len(os))
	for i, o := range os {
		words[i] = o.Value + protocolsNote(o.Protocols)
	}
	return joinWords(words, "or")
}

// protocolsNote says which protocols a value is limited to: "" for all, " (udp
// only)" for one, " (not udp)" for all but one, else " (tcp/http)".
func protocolsNote(ps []model.Protocol) string {
	all := model.ProtocolValues
	switch {
	case len(ps) == 0 || len(ps) == len(all):
		return ""
	case len(ps) == 1:
		return " (" + string(ps[0]) + " only)"
	case len(ps) == len(all)-1:
		for _, p := range all {
			if !slices.Contains(ps, model.Protocol(p)) {
				return " (not " + p + ")"
			}
		}
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	return " (" + strings.Join(names, "/") + ")"
}

// joinWords spells "a", "a and b", "a, b and c".
func joinWords(ws []string, and string) string {
	if len(ws) <= 1 {
		return strings.Join(ws, "")
	}
	return strings.Join(ws[:len(ws)-1], ", ") + " " + and + " " + ws[len(ws)-1]
}
