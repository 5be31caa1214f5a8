package api

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/linode/linodego"
)

// TestCatalogueEndpointsDecodeInLinodego reads the public endpoints Linode's clients
// call at start-up through linodego, without a token, as Terraform's provider and
// linode_api4 do.
func TestCatalogueEndpointsDecodeInLinodego(t *testing.T) {
	e := newEnv(t)
	srv := e.serve()
	anon := client(srv, "")
	ctx := context.Background()

	// Terraform's provider ping: ListTypes with page_size 100.
	types, err := anon.ListTypes(ctx, linodego.NewListOptions(100, ""))
	if err != nil || len(types) != 0 {
		t.Fatalf("ListTypes = %v, %v; want an empty list (this server runs no instances)", types, err)
	}
	if r := e.doAs("", "GET", "/v4/linode/types?page=1&page_size=100", ""); r.status != 200 ||
		string(r.body) != `{"data":[],"page":1,"pages":1,"results":0}` {
		t.Fatalf("GET /linode/types = %d %s", r.status, r.body)
	}
	if _, err := anon.GetType(ctx, "g6-nanode-1"); status(err) != http.StatusNotFound {
		t.Fatalf("GetType = %v, want 404", err)
	}

	regions, err := anon.ListRegions(ctx, nil)
	if err != nil || len(regions) != 1 {
		t.Fatalf("ListRegions = %v, %v", regions, err)
	}
	r := regions[0]
	if r.ID != "local" || r.Status != "ok" || r.SiteType != "core" || !slices.Equal(r.Capabilities, []string{linodego.CapabilityNodeBalancers}) {
		t.Fatalf("region %+v", r)
	}
	got, err := anon.GetRegion(ctx, "local")
	if err != nil || got.ID != "local" || !slices.Contains(got.Capabilities, "NodeBalancers") {
		t.Fatalf("GetRegion(local) = %+v, %v", got, err)
	}
	if _, err := anon.GetRegion(ctx, "us-east"); status(err) != http.StatusNotFound {
		t.Fatalf("GetRegion(us-east) = %v, want 404", err)
	}
	// Filtering by capability, as tools choosing a region do.
	f := `{"capabilities":"NodeBalancers"}`
	regions, err = anon.ListRegions(ctx, linodego.NewListOptions(0, f))
	if err != nil || len(regions) != 1 {
		t.Fatalf("ListRegions(%s) = %v, %v", f, regions, err)
	}

	nbTypes, err := anon.ListNodeBalancerTypes(ctx, linodego.NewListOptions(0, `{"transfer":0}`))
	if err != nil || len(nbTypes) != 1 || nbTypes[0].ID != "nodebalancer" {
		t.Fatalf("ListNodeBalancerTypes = %+v, %v", nbTypes, err)
	}
}

// TestRegionFollowsPolicy shows the region is the server's --region, not a constant.
func TestRegionFollowsPolicy(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Policy.Region = "eu-lab" })
	if r := e.doAs("", "GET", "/v4/regions/eu-lab", ""); r.status != 200 || r.json(t)["id"] != "eu-lab" {
		t.Fatalf("GET /regions/eu-lab = %d %s", r.status, r.body)
	}
	if r := e.doAs("", "GET", "/v4/regions/local", ""); r.status != 404 {
		t.Fatalf("GET /regions/local = %d %s", r.status, r.body)
	}
}

// TestNodeBalancerVPCs: an existing NodeBalancer has an empty VPC list (which
// Terraform's resource and its linode_nodebalancer_vpcs data source both accept) and no
// VPC configuration; a missing one is 404.
func TestNodeBalancerVPCs(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	vpcs, err := lc.ListNodeBalancerVPCConfigs(ctx, nb.ID, linodego.NewListOptions(0, `{"subnet_id":5}`))
	if err != nil || len(vpcs) != 0 {
		t.Fatalf("ListNodeBalancerVPCConfigs = %v, %v", vpcs, err)
	}
	if _, err := lc.GetNodeBalancerVPCConfig(ctx, nb.ID, 1); status(err) != 404 {
		t.Fatalf("GetNodeBalancerVPCConfig = %v, want 404", err)
	}
	// The provider asks for vpc config 0 when a node has none.
	if _, err := lc.GetNodeBalancerVPCConfig(ctx, nb.ID, 0); status(err) != 404 {
		t.Fatalf("GetNodeBalancerVPCConfig(0) = %v, want 404", err)
	}
	if _, err := lc.ListNodeBalancerVPCConfigs(ctx, nb.ID+100, nil); status(err) != 404 {
		t.Fatalf("VPCs of a missing NodeBalancer = %v, want 404", err)
	}
	// Not public: it is about the caller's NodeBalancers.
	if r := e.doAs("", "GET", "/v4/nodebalancers/1/vpcs", ""); r.status != 401 {
		t.Fatalf("anonymous vpcs = %d", r.status)
	}
}
