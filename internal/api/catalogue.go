package api

// The public, read-only catalogue endpoints Linode's clients read before they touch a
// NodeBalancer: Terraform's provider lists /linode/types on every run to check that
// the API answers, linode_api4 follows a NodeBalancer's region to /regions/{id}, and
// tools choose a region by its capabilities. They answer what this server really
// offers: one region, NodeBalancers only, and no Linode instance plans.

// regionCapabilities is what the one region offers: this server runs NodeBalancers
// and nothing else Linode sells.
var regionCapabilities = []string{"NodeBalancers"}

type resolversJSON struct {
	IPv4 string `json:"ipv4"`
	IPv6 string `json:"ipv6"`
}

type monitorsJSON struct {
	Alerts  []string `json:"alerts"`
	Metrics []string `json:"metrics"`
}

// regionJSON is Linode's Region object (linodego's Region).
type regionJSON struct {
	ID                   string        `json:"id"`
	Label                string        `json:"label"`
	Country              string        `json:"country"`
	Capabilities         []string      `json:"capabilities"`
	Status               string        `json:"status"`
	SiteType             string        `json:"site_type"`
	Resolvers            resolversJSON `json:"resolvers"`
	Monitors             monitorsJSON  `json:"monitors"`
	PlacementGroupLimits *struct{}     `json:"placement_group_limits"`
}

var regionFields = filterFields{"id": kindString, "label": kindString, "country": kindString,
	"status": kindString, "site_type": kindString, "capabilities": kindTags}

// region is the one region this server serves, named by its --region setting. It has
// no country and no resolvers: the server does not know where it runs.
func (a *API) region() regionJSON {
	return regionJSON{
		ID: a.o.Policy.Region, Label: a.o.Policy.Region, Capabilities: regionCapabilities,
		Status: "ok", SiteType: "core", Monitors: monitorsJSON{Alerts: []string{}, Metrics: []string{}},
	}
}

func listRegions(c *call) (any, error) {
	return list(c, []regionJSON{c.a.region()}, regionFields, func(r regionJSON) getter {
		return func(f string) fieldValue {
			switch f {
			case "id":
				return fieldValue{s: r.ID}
			case "label":
				return fieldValue{s: r.Label}
			case "country":
				return fieldValue{s: r.Country}
			case "status":
				return fieldValue{s: r.Status}
			case "site_type":
				return fieldValue{s: r.SiteType}
			case "capabilities":
				return fieldValue{tags: r.Capabilities}
			}
			return fieldValue{}
		}
	}, func(r regionJSON) (any, error) { return r, nil })
}

// getRegion answers the server's region and 404 for any other id.
func getRegion(c *call) (any, error) {
	if c.slug != c.a.o.Policy.Region {
		return nil, errNotFound
	}
	return c.a.region(), nil
}

// linodeTypeJSON stands for Linode's instance plan object (linodego's LinodeType).
// None exist here; the type fixes the filterable fields and documents the shape.
type linodeTypeJSON struct {
	ID    string `json:"id"`
	Label string `json:"label"`
	Class string `json:"class"`
}

var linodeTypeFields = filterFields{"id": kindString, "label": kindString, "class": kindString}

// listLinodeTypes answers an empty list: this server runs no Linode instances, so it
// offers no instance plans. Clients call it only to see that the API answers.
func listLinodeTypes(c *call) (any, error) {
	return list(c, []linodeTypeJSON{}, linodeTypeFields, func(t linodeTypeJSON) getter {
		return func(f string) fieldValue {
			switch f {
			case "id":
				return fieldValue{s: t.ID}
			case "label":
				return fieldValue{s: t.Label}
			}
			return fieldValue{s: t.Class}
		}
	}, func(t linodeTypeJSON) (any, error) { return t, nil })
}

// vpcConfigJSON stands for Linode's NodeBalancer VPC configuration. VPCs are not
// supported (a create with vpcs is refused), so a NodeBalancer never has one.
type vpcConfigJSON struct {
	ID             int    `json:"id"`
	IPv4Range      string `json:"ipv4_range"`
	NodeBalancerID int    `json:"nodebalancer_id"`
	SubnetID       int    `json:"subnet_id"`
	VPCID          int    `json:"vpc_id"`
}

var vpcConfigFields = filterFields{"id": kindInt, "ipv4_range": kindString, "ipv6_range": kindString,
	"nodebalancer_id": kindInt, "subnet_id": kindInt, "vpc_id": kindInt}

// listVPCConfigs answers an empty list for an existing NodeBalancer. An empty list
// rather than a 404: Terraform's resource treats either as "no VPCs", but its
// linode_nodebalancer_vpcs data source fails on a 404.
func listVPCConfigs(c *call) (any, error) {
	if _, err := c.a.o.DB.NodeBalancer(c.ids[0]); err != nil {
		return nil, err
	}
	return list(c, []vpcConfigJSON{}, vpcConfigFields, func(v vpcConfigJSON) getter {
		return func(f string) fieldValue {
			switch f {
			case "ipv4_range", "ipv6_range":
				return fieldValue{s: v.IPv4Range}
			}
			return fieldValue{n: int64(v.ID)}
		}
	}, func(v vpcConfigJSON) (any, error) { return v, nil })
}

// getVPCConfig answers 404: no NodeBalancer has a VPC configuration.
func getVPCConfig(c *call) (any, error) {
	if _, err := c.a.o.DB.NodeBalancer(c.ids[0]); err != nil {
		return nil, err
	}
	return nil, errNotFound
}
