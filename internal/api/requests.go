package api

import (
	"strconv"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// A patch is what one request body says about one object: the fields it gives, as
// pointers (nil = not given). Create applies a patch to the defaults, update to the
// stored object, so both share one reading of the body — and applying a patch inside
// a store transaction is safe to repeat should a backend retry it.

// nodeBalancerPatch is the NodeBalancer fields of a create or update body.
type nodeBalancerPatch struct {
	label, region, typ, ipv4 *string
	throttle, udpThrottle    *int
	tags                     *[]string
	firewallID               int // create only; 0 when not given
}

func readNodeBalancer(o *object, create bool) nodeBalancerPatch {
	var p nodeBalancerPatch
	p.label = optStr(o, "label")
	p.throttle = optInt(o, "client_conn_throttle")
	p.typ = optStr(o, "type")
	var tags []string
	if o.strings("tags", &tags) {
		p.tags = &tags
	}
	p.udpThrottle = optInt(o, "client_udp_sess_throttle")
	o.ignore("id", "hostname", "ipv6", "transfer", "created", "updated", "locks")
	if create {
		p.region = optStr(o, "region")
		p.ipv4 = optStr(o, "ipv4")
		if o.integer("firewall_id", &p.firewallID) && p.firewallID < 0 {
			o.es.Add("firewall_id", "firewall_id must be the id of a firewall")
		}
		o.unsupported("vpcs")
	} else {
		o.ignore("region", "ipv4")
	}
	return p
}

func (p nodeBalancerPatch) apply(nb *model.NodeBalancer) {
	setStr(&nb.Label, p.label)
	setStr(&nb.Region, p.region)
	setStr(&nb.IPv4, p.ipv4)
	if p.typ != nil && *p.typ != "" {
		nb.Type = model.Type(*p.typ)
	}
	setInt(&nb.ClientConnThrottle, p.throttle)
	setInt(&nb.ClientUDPSessThrottle, p.udpThrottle)
	if p.tags != nil {
		nb.Tags = *p.tags
	}
	if nb.Tags == nil {
		nb.Tags = []string{}
	}
}

// validateNodeBalancer runs the model's rules; an empty label is left for the store
// to generate, so it is checked as if it were a valid one.
func validateNodeBalancer(nb model.NodeBalancer, p model.Policy) model.Errors {
	if nb.Label == "" {
		nb.Label = "generated"
	}
	return model.ValidateNodeBalancer(&nb, p)
}

// certField is how a request gives ssl_cert or ssl_key.
type certField uint8

const (
	certAbsent    certField = iota // not given, or <REDACTED>: keep what is stored
	certGiven                      // a new value (possibly "" or null: remove)
	certRedactedF                  // <REDACTED> sent back
)

// configPatch is the Config fields of a create, update or rebuild body.
type configPatch struct {
	port, checkInterval, checkTimeout, checkAttempts *int
	udpCheckPort                                     *int
	protocol, algorithm, stickiness, check           *string
	proxyProtocol, cipherSuite, checkPath, checkBody *string
	checkPassive                                     *bool
	cert, key                                        string
	certHow, keyHow                                  certField
}

func readConfig(o *object) configPatch {
	var p configPatch
	// An explicit 0 is refused by validation (port 1-65535), as the live API does,
	// although linodego sends "port": 0 when its caller leaves Port unset: reading
	// it as "not given" would silently keep or default a port the caller never chose.
	p.port = optInt(o, "port")
	p.protocol = optEnum(o, "protocol")
	p.algorithm = optEnum(o, "algorithm")
	p.stickiness = optEnum(o, "stickiness")
	p.check = optEnum(o, "check")
	p.proxyProtocol = optEnum(o, "proxy_protocol")
	p.cipherSuite = optEnum(o, "cipher_suite")
	p.checkInterval = optInt(o, "check_interval")
	p.checkTimeout = optInt(o, "check_timeout")
	p.checkAttempts = optInt(o, "check_attempts")
	p.checkPath = optStr(o, "check_path")
	p.checkBody = optStr(o, "check_body")
	var b bool
	if o.boolean("check_passive", &b) {
		p.checkPassive = &b
	}
	p.cert, p.certHow = readCert(o, "ssl_cert")
	p.key, p.keyHow = readCert(o, "ssl_key")
	p.udpCheckPort = optInt(o, "udp_check_port")
	o.ignore("id", "nodebalancer_id", "nodes_status", "ssl_commonname", "ssl_fingerprint", "udp_session_timeout", "listener")
	return p
}

func readCert(o *object, key string) (string, certField) {
	if o.isNullField(key) {
		o.take(key)
		return "", certGiven
	}
	var s string
	if !o.str(key, &s) {
		return "", certAbsent
	}
	if s == model.Redacted {
		return "", certRedactedF
	}
	return s, certGiven
}

// apply writes the patch onto c. When it changes the protocol, model.FitProtocol
// drops the stored values the request left out that the new protocol does not allow
// (a client switching https→http with linodego cannot send null for the certificate:
// its fields are omitempty; the CCM never sends stickiness for tcp).
func (p configPatch) apply(c *model.Config, create bool) {
	before := c.Protocol
	if create {
		before = "" // a create sets the protocol: <REDACTED> sent for an http config is dropped
	}
	if p.port != nil {
		c.Port = *p.port
	}
	setEnum(&c.Protocol, p.protocol)
	setEnum(&c.Algorithm, p.algorithm)
	setEnum(&c.Stickiness, p.stickiness)
	setEnum(&c.Check, p.check)
	setEnum(&c.ProxyProtocol, p.proxyProtocol)
	setEnum(&c.CipherSuite, p.cipherSuite)
	setInt(&c.CheckInterval, p.checkInterval)
	setInt(&c.CheckTimeout, p.checkTimeout)
	setInt(&c.CheckAttempts, p.checkAttempts)
	setInt(&c.UDPCheckPort, p.udpCheckPort)
	setStr(&c.CheckPath, p.checkPath)
	setStr(&c.CheckBody, p.checkBody)
	if p.checkPassive != nil {
		c.CheckPassive = *p.checkPassive
	}
	applyCert(&c.SSLCert, p.cert, p.certHow, create)
	applyCert(&c.SSLKey, p.key, p.keyHow, create)
	model.FitProtocol(c, before, p.sent)
}

// sent reports whether the request gave a value for a protocol-bound field
// (model.ProtocolBoundFields). <REDACTED> is not a value: it stands for the stored one.
func (p configPatch) sent(field string) bool {
	switch field {
	case "algorithm":
		return p.algorithm != nil
	case "stickiness":
		return p.stickiness != nil
	case "check":
		return p.check != nil
	case "proxy_protocol":
		return p.proxyProtocol != nil
	case "cipher_suite":
		return p.cipherSuite != nil
	case "ssl_cert":
		return p.certHow == certGiven
	case "ssl_key":
		return p.keyHow == certGiven
	}
	return false
}

func applyCert(dst *string, v string, how certField, create bool) {
	switch {
	case how == certGiven:
		*dst = v
	case how == certRedactedF && create:
		// Nothing is stored yet for <REDACTED> to stand for; keep it so validation
		// says the PEM is missing rather than silently creating without one.
		*dst = model.Redacted
	}
}

// nodePatch is the Node fields of a create, update or rebuild body.
type nodePatch struct {
	id             int
	address, label *string
	mode           *string
	weight         *int
}

func readNode(o *object, withID bool) nodePatch {
	var p nodePatch
	if withID {
		o.integer("id", &p.id)
	} else {
		o.ignore("id")
	}
	p.address = optStr(o, "address")
	p.label = optStr(o, "label")
	p.weight = optInt(o, "weight")
	p.mode = optEnum(o, "mode")
	o.unsupported("subnet_id", "vpc_config_id")
	o.ignore("status", "config_id", "nodebalancer_id")
	return p
}

func (p nodePatch) apply(n *model.Node) {
	setStr(&n.Address, p.address)
	setStr(&n.Label, p.label)
	setInt(&n.Weight, p.weight)
	setEnum(&n.Mode, p.mode)
}

// readNodes reads a list of node bodies under key.
func readNodes(o *object, key string, withID bool) (ps []nodePatch, present bool) {
	list, present := o.objects(key)
	for _, no := range list {
		if no == nil {
			ps = append(ps, nodePatch{})
			continue
		}
		ps = append(ps, readNode(no, withID))
		no.finish()
	}
	return ps, present
}

// newNodes builds nodes from create patches and validates them, errors prefixed by
// prefix ("nodes" or "configs[0].nodes").
func newNodes(ps []nodePatch, prefix string, pol model.Policy, es *model.Errors) []model.Node {
	out := make([]model.Node, 0, len(ps))
	for i, p := range ps {
		n := model.NewNode()
		p.apply(&n)
		es.Merge(prefix+"["+strconv.Itoa(i)+"]", model.ValidateNode(&n, pol))
		out = append(out, n)
	}
	return out
}

// decodeNodeBalancerCreate reads and validates a POST /nodebalancers body: the
// NodeBalancer with defaults applied, its configs with their nodes, and the
// firewall to attach (0 for none). Unknown fields are named in ignored.
func decodeNodeBalancerCreate(body []byte, pol model.Policy, ignored *[]string) (model.NodeBalancer, []model.ConfigWithNodes, int, model.Errors) {
	var es model.Errors
	o := parseBody(body, &es, ignored)
	if o == nil {
		return model.NodeBalancer{}, nil, 0, es
	}
	p := readNodeBalancer(o, true)
	type cfgIn struct {
		c     configPatch
		nodes []nodePatch
	}
	var cfgs []cfgIn
	list, _ := o.objects("configs")
	for _, co := range list {
		if co == nil {
			cfgs = append(cfgs, cfgIn{})
			continue
		}
		c := cfgIn{c: readConfig(co)}
		c.nodes, _ = readNodes(co, "nodes", false)
		co.finish()
		cfgs = append(cfgs, c)
	}
	o.finish()
	if len(es) > 0 {
		return model.NodeBalancer{}, nil, 0, es
	}
	nb := model.NodeBalancer{Type: model.DefaultType}
	p.apply(&nb)
	if nb.Region == "" {
		// As the live API: a region is never assumed, even with one to choose from.
		// The other fields are still checked, as if the region had been given.
		es.Add("region", "region is required")
		nb.Region = pol.Region
	}
	es = append(es, validateNodeBalancer(nb, pol)...)
	out := make([]model.ConfigWithNodes, 0, len(cfgs))
	for i, ci := range cfgs {
		prefix := "configs[" + strconv.Itoa(i) + "]"
		c := model.NewConfig()
		ci.c.apply(&c, true)
		es.Merge(prefix, model.ValidateConfig(&c))
		nodes := newNodes(ci.nodes, prefix+".nodes", pol, &es)
		out = append(out, model.ConfigWithNodes{Config: c, Nodes: nodes})
	}
	return nb, out, p.firewallID, es
}

// decodeNodeBalancerUpdate reads a PUT /nodebalancers/{id} body.
func decodeNodeBalancerUpdate(body []byte, ignored *[]string) (nodeBalancerPatch, model.Errors) {
	var es model.Errors
	o := parseBody(body, &es, ignored)
	if o == nil {
		return nodeBalancerPatch{}, es
	}
	p := readNodeBalancer(o, false)
	o.finish()
	return p, es
}

// decodeConfigCreate reads and validates a POST .../configs body: a config with
// defaults applied and, optionally, its nodes.
func decodeConfigCreate(body []byte, pol model.Policy, ignored *[]string) (model.ConfigWithNodes, model.Errors) {
	var es model.Errors
	o := parseBody(body, &es, ignored)
	if o == nil {
		return model.ConfigWithNodes{}, es
	}
	p := readConfig(o)
	nps, _ := readNodes(o, "nodes", false)
	o.finish()
	if len(es) > 0 {
		return model.ConfigWithNodes{}, es
	}
	c := model.NewConfig()
	p.apply(&c, true)
	es = append(es, model.ValidateConfig(&c)...)
	nodes := newNodes(nps, "nodes", pol, &es)
	return model.ConfigWithNodes{Config: c, Nodes: nodes}, es
}

// decodeConfigUpdate reads a PUT .../configs/{id} body. Nodes cannot change here
// (that is rebuild's job); an empty list is accepted since linodego's update options
// share the create options' fields.
func decodeConfigUpdate(body []byte, ignored *[]string) (configPatch, model.Errors) {
	var es model.Errors
	o := parseBody(body, &es, ignored)
	if o == nil {
		return configPatch{}, es
	}
	p := readConfig(o)
	if v, ok := o.take("nodes"); ok && !isZeroJSON(v) {
		es.Add("nodes", "nodes cannot be changed by updating a config; use the rebuild endpoint or the nodes endpoints")
	}
	o.finish()
	return p, es
}

// decodeRebuild reads a POST .../rebuild body: config fields and the required list
// of nodes, each with an optional id.
func decodeRebuild(body []byte, ignored *[]string) (configPatch, []nodePatch, model.Errors) {
	var es model.Errors
	o := parseBody(body, &es, ignored)
	if o == nil {
		return configPatch{}, nil, es
	}
	p := readConfig(o)
	nps, present := readNodes(o, "nodes", true)
	if !present && !hasErr(es, "nodes") {
		es.Add("nodes", "nodes is required: list every node the config keeps (send [] to remove them all)")
	}
	o.finish()
	return p, nps, es
}

// decodeNodeCreate reads and validates a POST .../nodes body.
func decodeNodeCreate(body []byte, pol model.Policy, ignored *[]string) (model.Node, model.Errors) {
	var es model.Errors
	o := parseBody(body, &es, ignored)
	if o == nil {
		return model.Node{}, es
	}
	p := readNode(o, false)
	o.finish()
	if len(es) > 0 {
		return model.Node{}, es
	}
	n := model.NewNode()
	p.apply(&n)
	return n, model.ValidateNode(&n, pol)
}

// decodeNodeUpdate reads a PUT .../nodes/{id} body.
func decodeNodeUpdate(body []byte, ignored *[]string) (nodePatch, model.Errors) {
	var es model.Errors
	o := parseBody(body, &es, ignored)
	if o == nil {
		return nodePatch{}, es
	}
	p := readNode(o, false)
	o.finish()
	return p, es
}

func hasErr(es model.Errors, field string) bool {
	for _, e := range es {
		if e.Field == field {
			return true
		}
	}
	return false
}

func optStr(o *object, key string) *string {
	var s string
	if o.str(key, &s) {
		return &s
	}
	return nil
}

// optEnum reads an enum field; "" counts as not given, as linodego omits it.
func optEnum(o *object, key string) *string {
	s := optStr(o, key)
	if s != nil && *s == "" {
		return nil
	}
	return s
}

func optInt(o *object, key string) *int {
	var n int
	if o.integer(key, &n) {
		return &n
	}
	return nil
}

func setStr(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func setInt(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

func setEnum[T ~string](dst *T, v *string) {
	if v != nil {
		*dst = T(*v)
	}
}
