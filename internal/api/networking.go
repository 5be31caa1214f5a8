package api

import (
	"net"
	"strconv"
	"strings"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// Reserved IPv4 addresses (/networking/reserved/ips), as linodego's
// network_reserved_ips.go drives them: frontend-pool addresses kept aside for
// NodeBalancers. The rules between addresses and NodeBalancers are the store's
// (store/reserved.go); this file only translates.

var reservedIPFields = filterFields{"address": kindString, "region": kindString, "tags": kindTags}

// assignedEntityJSON is what a reserved address is assigned to.
type assignedEntityJSON struct {
	ID    int    `json:"id"`
	Label string `json:"label"`
	Type  string `json:"type"`
	URL   string `json:"url"`
}

// reservedIPJSON is Linode's IP address object (linodego's InstanceIP) for a
// reserved address. Fields about Linode instances are null: no instance exists here.
type reservedIPJSON struct {
	Address        string              `json:"address"`
	Gateway        *string             `json:"gateway"`
	SubnetMask     string              `json:"subnet_mask"`
	Prefix         int                 `json:"prefix"`
	Type           string              `json:"type"`
	Public         bool                `json:"public"`
	RDNS           string              `json:"rdns"`
	LinodeID       *int                `json:"linode_id"`
	InterfaceID    *int                `json:"interface_id"`
	Region         string              `json:"region"`
	VPCNAT1To1     *struct{}           `json:"vpc_nat_1_1"`
	Reserved       bool                `json:"reserved"`
	Tags           []string            `json:"tags"`
	AssignedEntity *assignedEntityJSON `json:"assigned_entity"`
}

func (a *API) renderReservedIP(r store.ReservedIPUse) reservedIPJSON {
	out := reservedIPJSON{
		Address: r.Address, Type: "ipv4", Public: true, RDNS: a.hostname(r.Address),
		Region: r.Region, Reserved: true, Tags: r.Tags,
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if r.Pool.IsValid() {
		out.Prefix = r.Pool.Bits()
		out.SubnetMask = net.IP(net.CIDRMask(r.Pool.Bits(), 32)).String()
	}
	if nb := r.UsedBy; nb != nil {
		out.AssignedEntity = &assignedEntityJSON{ID: nb.ID, Label: nb.Label, Type: "nodebalancer",
			URL: "/v4/nodebalancers/" + strconv.Itoa(nb.ID)}
	}
	return out
}

func reservedIPGetter(r store.ReservedIPUse) getter {
	return func(f string) fieldValue {
		switch f {
		case "address":
			return fieldValue{s: r.Address}
		case "region":
			return fieldValue{s: r.Region}
		case "tags":
			return fieldValue{tags: r.Tags}
		}
		return fieldValue{}
	}
}

func listReservedIPs(c *call) (any, error) {
	all, err := c.a.o.DB.ReservedIPs()
	if err != nil {
		return nil, err
	}
	return list(c, all, reservedIPFields, reservedIPGetter, func(r store.ReservedIPUse) (any, error) {
		return c.a.renderReservedIP(r), nil
	})
}

func getReservedIP(c *call) (any, error) {
	r, err := c.a.o.DB.ReservedIP(c.slug)
	if err != nil {
		return nil, err
	}
	return c.a.renderReservedIP(r), nil
}

// reserveIP answers POST /networking/reserved/ips: {"region", "tags"} as Linode
// takes them, and — this server's addition — "address" to reserve one given pool
// address rather than the next free one.
func reserveIP(c *call) (any, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	var es model.Errors
	o := parseBody(b, &es, &c.ignored)
	if o == nil {
		return nil, es
	}
	var r model.ReservedIP
	o.str("region", &r.Region)
	o.str("address", &r.Address)
	o.strings("tags", &r.Tags)
	o.finish()
	if len(es) > 0 {
		return nil, es
	}
	r.Address = strings.TrimSpace(r.Address)
	if es := model.ValidateReservedIP(&r, c.a.o.Policy); len(es) > 0 {
		return nil, es
	}
	out, err := c.a.o.DB.ReserveIP(r)
	if err != nil {
		return nil, err
	}
	return c.a.renderReservedIP(out), nil
}

// updateReservedIP answers PUT /networking/reserved/ips/{address}: the tags given
// replace the current ones, as Linode documents; tags is required.
func updateReservedIP(c *call) (any, error) {
	if _, err := c.a.o.DB.ReservedIP(c.slug); err != nil {
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
	var tags []string
	given := o.strings("tags", &tags)
	o.ignore("address", "region", "reserved", "assigned_entity")
	o.finish()
	if len(es) > 0 {
		return nil, es
	}
	if !given {
		return nil, badRequest("tags", "tags is required: the full list of tags the address keeps (send [] to remove them all)")
	}
	out, err := c.a.o.DB.UpdateReservedIP(c.slug, func(r *model.ReservedIP) error {
		r.Tags = tags
		return model.ValidateReservedIP(r, model.Policy{Region: r.Region}).Err()
	})
	if err != nil {
		return nil, err
	}
	return c.a.renderReservedIP(out), nil
}

// deleteReservedIP answers DELETE /networking/reserved/ips/{address}. As Linode
// documents, unreserving an address a NodeBalancer uses leaves it attached: it
// becomes that NodeBalancer's ordinary address and is freed with it.
func deleteReservedIP(c *call) (any, error) {
	return nil, c.a.o.DB.DeleteReservedIP(c.slug)
}

// ---- Profile

// profileJSON is linodego's Profile. This server has one user, the operator: every
// token belongs to it, so every token sees the same profile.
type profileJSON struct {
	UID                int             `json:"uid"`
	Username           string          `json:"username"`
	Email              string          `json:"email"`
	Timezone           string          `json:"timezone"`
	EmailNotifications bool            `json:"email_notifications"`
	IPWhitelistEnabled bool            `json:"ip_whitelist_enabled"`
	TwoFactorAuth      bool            `json:"two_factor_auth"`
	Restricted         bool            `json:"restricted"`
	LishAuthMethod     string          `json:"lish_auth_method"`
	Referrals          profileReferral `json:"referrals"`
	AuthorizedKeys     []string        `json:"authorized_keys"`
	AuthenticationType string          `json:"authentication_type"`
}

type profileReferral struct {
	Total     int     `json:"total"`
	Completed int     `json:"completed"`
	Pending   int     `json:"pending"`
	Credit    float64 `json:"credit"`
	Code      string  `json:"code"`
	URL       string  `json:"url"`
}

// ProfileUsername is the name of this server's one user.
const ProfileUsername = "nodebalancer"

// getProfile answers GET /profile with the one user's profile. Like Linode, it
// needs a valid token of any scope (clients use it to check their token). Only what
// is true here is filled in: restricted is false (a token's scopes are the only
// limits), times are UTC, there is no Lish, no e-mail, no password login (tokens
// only: authentication_type is empty) and no referrals.
func getProfile(*call) (any, error) {
	return profileJSON{
		UID: 1, Username: ProfileUsername, Timezone: "UTC",
		LishAuthMethod: "disabled", AuthorizedKeys: []string{},
	}, nil
}
