package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// Filterable fields of each collection.
var (
	nodeBalancerFields = filterFields{"id": kindInt, "label": kindString, "ipv4": kindString, "ipv6": kindString, "region": kindString, "tags": kindTags}
	configFields       = filterFields{"id": kindInt, "port": kindInt, "protocol": kindString, "algorithm": kindString,
		"stickiness": kindString, "check": kindString, "proxy_protocol": kindString, "cipher_suite": kindString}
	nodeFields = filterFields{"id": kindInt, "label": kindString, "address": kindString, "mode": kindString,
		"status": kindString, "weight": kindInt}
	tokenFields = filterFields{"id": kindInt, "label": kindString}
	typeFields  = filterFields{"id": kindString, "label": kindString, "transfer": kindInt}
)

// ---- NodeBalancers

func nodeBalancerGetter(nb model.NodeBalancer) getter {
	return func(f string) fieldValue {
		switch f {
		case "id":
			return fieldValue{n: int64(nb.ID)}
		case "label":
			return fieldValue{s: nb.Label}
		case "ipv4":
			return fieldValue{s: nb.IPv4}
		case "ipv6":
			return fieldValue{s: nb.IPv6}
		case "region":
			return fieldValue{s: nb.Region}
		case "tags":
			return fieldValue{tags: nb.Tags}
		}
		return fieldValue{}
	}
}

func listNodeBalancers(c *call) (any, error) {
	nbs, err := c.a.o.DB.ListNodeBalancers()
	if err != nil {
		return nil, err
	}
	return list(c, nbs, nodeBalancerFields, nodeBalancerGetter, func(nb model.NodeBalancer) (any, error) {
		return c.a.renderNodeBalancer(nb), nil
	})
}

func createNodeBalancer(c *call) (any, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	nb, cfgs, fwID, es := decodeNodeBalancerCreate(b, c.a.o.Policy, &c.ignored)
	if len(es) > 0 {
		return nil, es
	}
	var also []func(store.Tx, model.NodeBalancer) error
	if fwID != 0 {
		// Attaching a firewall is a firewall write too, as Linode's scopes have it.
		if !c.scopes.allows("firewall", levelReadWrite) {
			return nil, &apiError{http.StatusForbidden, model.Errors{{Field: "firewall_id",
				Reason: "Your OAuth token is not authorized to attach firewalls: it needs firewall:read_write"}}}
		}
		also = append(also, c.a.o.DB.AttachFirewall(fwID))
	}
	nb, err = c.a.o.DB.CreateNodeBalancer(nb, cfgs, also...)
	if err != nil {
		return nil, err
	}
	return c.a.renderNodeBalancer(nb), nil
}

func getNodeBalancer(c *call) (any, error) {
	nb, err := c.a.o.DB.NodeBalancer(c.ids[0])
	if err != nil {
		return nil, err
	}
	return c.a.renderNodeBalancer(nb), nil
}

func updateNodeBalancer(c *call) (any, error) {
	if _, err := c.a.o.DB.NodeBalancer(c.ids[0]); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	p, es := decodeNodeBalancerUpdate(b, &c.ignored)
	if len(es) > 0 {
		return nil, es
	}
	nb, err := c.a.o.DB.UpdateNodeBalancer(c.ids[0], func(nb *model.NodeBalancer) error {
		p.apply(nb)
		// The region is fixed at creation; check against its own so a NodeBalancer
		// stays editable should the server's region setting change.
		pol := c.a.o.Policy
		pol.Region = nb.Region
		return validateNodeBalancer(*nb, pol).Err()
	})
	if err != nil {
		return nil, err
	}
	return c.a.renderNodeBalancer(nb), nil
}

func deleteNodeBalancer(c *call) (any, error) {
	return nil, c.a.o.DB.DeleteNodeBalancer(c.ids[0])
}

func getStats(c *call) (any, error) {
	if _, err := c.a.o.DB.NodeBalancer(c.ids[0]); err != nil {
		return nil, err
	}
	if c.a.o.Stats == nil {
		return nil, errNotFound
	}
	return c.a.o.Stats.NodeBalancerStats(c.ids[0], c.r.URL.Query())
}

// nodeBalancerTypes is the fixed plan list: one type, free.
var nodeBalancerTypes = []typeJSON{{ID: "nodebalancer", Label: "NodeBalancer", RegionPrices: []priceJSON{}}}

func listTypes(c *call) (any, error) {
	return list(c, nodeBalancerTypes, typeFields, func(t typeJSON) getter {
		return func(name string) fieldValue {
			switch name {
			case "id":
				return fieldValue{s: t.ID}
			case "transfer":
				return fieldValue{n: int64(t.Transfer)}
			}
			return fieldValue{s: t.Label}
		}
	}, func(t typeJSON) (any, error) { return t, nil })
}

// ---- Configs

func configGetter(cf model.Config) getter {
	return func(f string) fieldValue {
		switch f {
		case "id":
			return fieldValue{n: int64(cf.ID)}
		case "port":
			return fieldValue{n: int64(cf.Port)}
		case "protocol":
			return fieldValue{s: string(cf.Protocol)}
		case "algorithm":
			return fieldValue{s: string(cf.Algorithm)}
		case "stickiness":
			return fieldValue{s: string(cf.Stickiness)}
		case "check":
			return fieldValue{s: string(cf.Check)}
		case "proxy_protocol":
			return fieldValue{s: string(cf.ProxyProtocol)}
		case "cipher_suite":
			return fieldValue{s: string(cf.CipherSuite)}
		}
		return fieldValue{}
	}
}

// renderConfig renders a config with its nodes' status counts.
func (c *call) renderConfig(cf model.Config) (any, error) {
	nodes, err := c.a.o.DB.Nodes(cf.NodeBalancerID, cf.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return c.a.renderConfig(cf, nodes), nil
}

func listConfigs(c *call) (any, error) {
	cfgs, err := c.a.o.DB.Configs(c.ids[0])
	if err != nil {
		return nil, err
	}
	return list(c, cfgs, configFields, configGetter, c.renderConfig)
}

func createConfig(c *call) (any, error) {
	if _, err := c.a.o.DB.NodeBalancer(c.ids[0]); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	cwn, es := decodeConfigCreate(b, c.a.o.Policy, &c.ignored)
	if len(es) > 0 {
		return nil, es
	}
	cf, err := c.a.o.DB.CreateConfig(c.ids[0], cwn)
	if err != nil {
		return nil, err
	}
	return c.renderConfig(cf)
}

func getConfig(c *call) (any, error) {
	cf, err := c.a.o.DB.Config(c.ids[0], c.ids[1])
	if err != nil {
		return nil, err
	}
	return c.renderConfig(cf)
}

func updateConfig(c *call) (any, error) {
	if _, err := c.a.o.DB.Config(c.ids[0], c.ids[1]); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	p, es := decodeConfigUpdate(b, &c.ignored)
	if len(es) > 0 {
		return nil, es
	}
	cf, err := c.a.o.DB.UpdateConfig(c.ids[0], c.ids[1], func(cf *model.Config) error {
		p.apply(cf, false)
		return model.ValidateConfig(cf).Err()
	})
	if err != nil {
		return nil, err
	}
	return c.renderConfig(cf)
}

func deleteConfig(c *call) (any, error) {
	return nil, c.a.o.DB.DeleteConfig(c.ids[0], c.ids[1])
}

// rebuildConfig replaces a config and its node set: listed nodes with an id are
// updated (fields given change, others keep their value), nodes without one are
// created, and nodes not listed are deleted — one store transaction.
func rebuildConfig(c *call) (any, error) {
	nbID, cfID := c.ids[0], c.ids[1]
	if _, err := c.a.o.DB.Config(nbID, cfID); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	p, nps, es := decodeRebuild(b, &c.ignored)
	if len(es) > 0 {
		return nil, es
	}
	existing, err := c.a.o.DB.Nodes(nbID, cfID)
	if err != nil {
		return nil, err
	}
	byID := make(map[int]model.Node, len(existing))
	for _, n := range existing {
		byID[n.ID] = n
	}
	var nodeErrs model.Errors
	seen := map[int]bool{}
	nodes := make([]model.Node, 0, len(nps))
	for i, np := range nps {
		f := "nodes[" + strconv.Itoa(i) + "]"
		n := model.NewNode()
		if np.id != 0 {
			old, ok := byID[np.id]
			switch {
			case !ok:
				nodeErrs.Add(f+".id", "node "+strconv.Itoa(np.id)+" is not a node of config "+strconv.Itoa(cfID))
			case seen[np.id]:
				nodeErrs.Add(f+".id", "node "+strconv.Itoa(np.id)+" is listed twice")
			default:
				n = old
			}
			seen[np.id] = true
			n.ID = np.id
		}
		np.apply(&n)
		nodeErrs.Merge(f, model.ValidateNode(&n, c.a.o.Policy))
		nodes = append(nodes, n)
	}
	out, err := c.a.o.DB.RebuildConfig(nbID, cfID, func(cf *model.Config) error {
		p.apply(cf, false)
		all := model.ValidateConfig(cf)
		return append(all, nodeErrs...).Err()
	}, nodes)
	if err != nil {
		return nil, err
	}
	return c.a.renderConfig(out.Config, out.Nodes), nil
}

// ---- Nodes

func nodeGetter(a *API) func(model.Node) getter {
	return func(n model.Node) getter {
		return func(f string) fieldValue {
			switch f {
			case "id":
				return fieldValue{n: int64(n.ID)}
			case "label":
				return fieldValue{s: n.Label}
			case "address":
				return fieldValue{s: n.Address}
			case "mode":
				return fieldValue{s: string(n.Mode)}
			case "status":
				return fieldValue{s: string(a.status(n))}
			case "weight":
				return fieldValue{n: int64(n.Weight)}
			}
			return fieldValue{}
		}
	}
}

func listNodes(c *call) (any, error) {
	nodes, err := c.a.o.DB.Nodes(c.ids[0], c.ids[1])
	if err != nil {
		return nil, err
	}
	return list(c, nodes, nodeFields, nodeGetter(c.a), func(n model.Node) (any, error) {
		return c.a.renderNode(n), nil
	})
}

func createNode(c *call) (any, error) {
	if _, err := c.a.o.DB.Config(c.ids[0], c.ids[1]); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	n, es := decodeNodeCreate(b, c.a.o.Policy, &c.ignored)
	if len(es) > 0 {
		return nil, es
	}
	n, err = c.a.o.DB.CreateNode(c.ids[0], c.ids[1], n)
	if err != nil {
		return nil, err
	}
	return c.a.renderNode(n), nil
}

func getNode(c *call) (any, error) {
	n, err := c.a.o.DB.Node(c.ids[0], c.ids[1], c.ids[2])
	if err != nil {
		return nil, err
	}
	return c.a.renderNode(n), nil
}

func updateNode(c *call) (any, error) {
	if _, err := c.a.o.DB.Node(c.ids[0], c.ids[1], c.ids[2]); err != nil {
		return nil, err
	}
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	p, es := decodeNodeUpdate(b, &c.ignored)
	if len(es) > 0 {
		return nil, es
	}
	n, err := c.a.o.DB.UpdateNode(c.ids[0], c.ids[1], c.ids[2], func(n *model.Node) error {
		p.apply(n)
		return model.ValidateNode(n, c.a.o.Policy).Err()
	})
	if err != nil {
		return nil, err
	}
	return c.a.renderNode(n), nil
}

func deleteNode(c *call) (any, error) {
	return nil, c.a.o.DB.DeleteNode(c.ids[0], c.ids[1], c.ids[2])
}

// ---- Tokens

// maxTokenLabel is the longest token label, as Linode allows.
const maxTokenLabel = 100

func tokenGetter(t model.Token) getter {
	return func(f string) fieldValue {
		if f == "id" {
			return fieldValue{n: int64(t.ID)}
		}
		return fieldValue{s: t.Label}
	}
}

func listTokens(c *call) (any, error) {
	all, err := c.a.o.DB.Tokens()
	if err != nil {
		return nil, err
	}
	return list(c, all, tokenFields, tokenGetter, func(t model.Token) (any, error) { return renderToken(t, ""), nil })
}

func getToken(c *call) (any, error) {
	t, err := c.a.o.DB.Token(c.ids[0])
	if err != nil {
		return nil, err
	}
	return renderToken(t, ""), nil
}

func checkTokenLabel(es *model.Errors, label string) {
	switch {
	case !utf8.ValidString(label) || utf8.RuneCountInString(label) > maxTokenLabel:
		es.Add("label", "label must be at most "+strconv.Itoa(maxTokenLabel)+" characters")
	case strings.ContainsFunc(label, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		es.Add("label", "label must not contain control characters")
	}
}

// parseExpiry reads a token expiry: Linode's "YYYY-MM-DDTHH:MM:SS" (UTC) or RFC 3339.
func parseExpiry(s string) (time.Time, bool) {
	if t, err := time.Parse(timeLayout, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

func createToken(c *call) (any, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	var es model.Errors
	o := parseBody(b, &es, &c.ignored)
	if o == nil {
		return nil, es
	}
	var label, scopes, expiry string
	o.str("label", &label)
	o.str("scopes", &scopes)
	hasExpiry := o.str("expiry", &expiry)
	o.ignore("id", "created", "token")
	o.finish()
	if len(es) > 0 {
		return nil, es
	}
	checkTokenLabel(&es, label)
	if strings.TrimSpace(scopes) == "" {
		// A token made without scopes gets the scopes of the token making it ("*"
		// when that is the bootstrap token), never more.
		scopes = c.token.Scopes
	}
	set, norm, err := parseScopes(scopes)
	if err != nil {
		es.Add("scopes", err.Error())
	}
	var exp *time.Time
	if hasExpiry {
		t, ok := parseExpiry(expiry)
		switch {
		case !ok:
			es.Add("expiry", "expiry must be a UTC time formatted as YYYY-MM-DDTHH:MM:SS")
		case !t.After(c.a.o.Now()):
			es.Add("expiry", "expiry must be in the future")
		default:
			t = t.Truncate(time.Second)
			exp = &t
		}
	}
	if len(es) > 0 {
		return nil, es
	}
	if !c.scopes.covers(set) {
		return nil, &apiError{http.StatusForbidden, model.Errors{{Field: "scopes",
			Reason: "A token cannot grant scopes beyond those of the token used to create it (" + c.token.Scopes + ")"}}}
	}
	secret := newSecret()
	t, err := c.a.o.DB.CreateToken(model.Token{
		Label: label, Scopes: norm, Hash: hashToken(secret), Prefix: displayPrefix(secret), Expiry: exp,
	})
	c.a.tokens.invalidate()
	if err != nil {
		return nil, err
	}
	return renderToken(t, secret), nil
}

// manageable returns token id when the caller's scopes cover it: a token may not
// relabel or revoke a token more powerful than itself.
func (c *call) manageable(id int) (model.Token, error) {
	t, err := c.a.o.DB.Token(id)
	if err != nil {
		return t, err
	}
	set, _, err := parseScopes(t.Scopes)
	if err == nil && !c.scopes.covers(set) {
		return t, &apiError{http.StatusForbidden, model.Errors{{
			Reason: "A token cannot change or revoke a token with more scopes than its own"}}}
	}
	return t, nil
}

func updateToken(c *call) (any, error) {
	if _, err := c.manageable(c.ids[0]); err != nil {
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
	label := optStr(o, "label")
	// Only the label can change; the rest may be echoed back from a response.
	o.ignore("id", "created", "token", "scopes", "expiry")
	o.finish()
	if label != nil {
		checkTokenLabel(&es, *label)
	}
	if len(es) > 0 {
		return nil, es
	}
	t, err := c.a.o.DB.UpdateToken(c.ids[0], func(t *model.Token) error {
		setStr(&t.Label, label)
		return nil
	})
	c.a.tokens.invalidate()
	if err != nil {
		return nil, err
	}
	return renderToken(t, ""), nil
}

func deleteToken(c *call) (any, error) {
	if _, err := c.manageable(c.ids[0]); err != nil {
		return nil, err
	}
	err := c.a.o.DB.DeleteToken(c.ids[0])
	c.a.tokens.invalidate()
	return nil, err
}
