package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/linode/linodego"
)

// newToken creates a token with scopes through the API and returns its secret.
func newToken(t *testing.T, lc *linodego.Client, scopes string) string {
	t.Helper()
	tok, err := lc.CreateToken(context.Background(), linodego.TokenCreateOptions{Label: "t-" + strings.NewReplacer(":", "-", ",", "-", "*", "all").Replace(scopes), Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func TestLinodegoReservedIPs(t *testing.T) {
	e := newEnv(t)
	srv := e.serve()
	lc := client(srv, e.token)
	ctx := context.Background()

	// Reserve the next free address (127.0.1.1: the pool is empty).
	r, err := lc.ReserveIPAddress(ctx, linodego.ReserveIPOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Address != "127.0.1.1" || !r.Reserved || r.Region != "local" || r.Type != linodego.IPTypeIPv4 ||
		!r.Public || r.Prefix != 24 || r.SubnetMask != "255.255.255.0" || r.LinodeID != 0 {
		t.Fatalf("reserved %+v", r)
	}

	// A NodeBalancer that does not ask for it gets another address; one that asks gets it.
	other, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil || *other.IPv4 != "127.0.1.2" {
		t.Fatalf("NB without ipv4 = %v, %v", other, err)
	}
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", Label: ptr("keeps-ip"), IPv4: ptr(r.Address)})
	if err != nil || *nb.IPv4 != r.Address {
		t.Fatalf("NB with the reserved ipv4 = %v, %v", nb, err)
	}
	// Shown as assigned (raw JSON: linodego v1.69.1 has no assigned_entity field yet).
	got := e.must("GET", "/v4/networking/reserved/ips/127.0.1.1", "")
	ae, _ := got["assigned_entity"].(map[string]any)
	if ae == nil || ae["type"] != "nodebalancer" || ae["label"] != "keeps-ip" || ae["url"] != "/v4/nodebalancers/"+itoa(float64(nb.ID)) {
		t.Fatalf("assigned_entity: %v", got)
	}

	// Deleting the NodeBalancer keeps the reservation, unassigned.
	if err := lc.DeleteNodeBalancer(ctx, nb.ID); err != nil {
		t.Fatal(err)
	}
	got = e.must("GET", "/v4/networking/reserved/ips/127.0.1.1", "")
	if got["assigned_entity"] != nil || got["reserved"] != true {
		t.Fatalf("after its NB was deleted: %v", got)
	}
	// ... and it is not handed to the next NodeBalancer.
	next, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil || *next.IPv4 != "127.0.1.3" {
		t.Fatalf("next NB = %v, %v (the reserved 127.0.1.1 must be skipped)", next, err)
	}

	// Reserve a given address (this server's "address" field), with tags; list,
	// filter, update tags.
	e.must("POST", "/v4/networking/reserved/ips", `{"region":"local","address":"127.0.1.9","tags":["web","prod"]}`)
	all, err := lc.ListReservedIPAddresses(ctx, nil)
	if err != nil || len(all) != 2 || all[0].Address != "127.0.1.1" || all[1].Address != "127.0.1.9" {
		t.Fatalf("list = %+v, %v", all, err)
	}
	byTag, err := lc.ListReservedIPAddresses(ctx, &linodego.ListOptions{Filter: `{"tags":"web"}`})
	if err != nil || len(byTag) != 1 || byTag[0].Address != "127.0.1.9" {
		t.Fatalf("filtered by tag = %+v, %v", byTag, err)
	}
	up := e.must("PUT", "/v4/networking/reserved/ips/127.0.1.9", `{"tags":["web"]}`)
	if tags, _ := up["tags"].([]any); len(tags) != 1 || tags[0] != "web" {
		t.Fatalf("tags after PUT: %v", up)
	}
	paged := e.must("GET", "/v4/networking/reserved/ips?page=1&page_size=25", "")
	if paged["results"] != float64(2) || paged["pages"] != float64(1) {
		t.Fatalf("page envelope: %v", paged)
	}

	// Refusals, each naming its field, changing nothing.
	before := e.snapshot()
	for _, tc := range []struct{ method, path, body, field, reason string }{
		{"POST", "/v4/networking/reserved/ips", `{}`, "region", "region is required"},
		{"POST", "/v4/networking/reserved/ips", `{"region":"us-east"}`, "region", "only region"},
		{"POST", "/v4/networking/reserved/ips", `{"region":"local","address":"127.0.1.9"}`, "address", "already reserved"},
		{"POST", "/v4/networking/reserved/ips", `{"region":"local","address":"10.0.0.1"}`, "address", "outside the frontend pool"},
		{"POST", "/v4/networking/reserved/ips", `{"region":"local","tags":["x"]}`, "tags[0]", "3-50"},
		{"PUT", "/v4/networking/reserved/ips/127.0.1.9", `{}`, "tags", "required"},
		{"POST", "/v4/nodebalancers", `{"region":"local","ipv4":"127.0.1.2"}`, "ipv4", "already used"},
	} {
		r := e.do(tc.method, tc.path, tc.body)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errs(t)[tc.field], tc.reason) {
			t.Errorf("%s %s %s = %d %s, want 400 %s: …%s…", tc.method, tc.path, tc.body, r.status, r.body, tc.field, tc.reason)
		}
	}
	if _, err := lc.GetReservedIPAddress(ctx, "127.0.1.200"); status(err) != http.StatusNotFound {
		t.Errorf("GET an unreserved address: %v, want 404", err)
	}
	if e.snapshot() != before {
		t.Fatal("a refused request changed the stored state")
	}

	// Unreserve: gone from the list; 404 the second time.
	if err := lc.DeleteReservedIPAddress(ctx, "127.0.1.9"); err != nil {
		t.Fatal(err)
	}
	if err := lc.DeleteReservedIPAddress(ctx, "127.0.1.9"); status(err) != http.StatusNotFound {
		t.Fatalf("second delete: %v, want 404", err)
	}
}

// TestUnreserveInUseKeepsTheNodeBalancersAddress follows the CCM's delete order:
// DELETE the reserved address, then the NodeBalancer. Linode documents that the
// address stays attached, as an ordinary one.
func TestUnreserveInUseKeepsTheNodeBalancersAddress(t *testing.T) {
	e := newEnv(t)
	lc := client(e.serve(), e.token)
	ctx := context.Background()
	r, err := lc.ReserveIPAddress(ctx, linodego.ReserveIPOptions{Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	nb, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local", IPv4: &r.Address})
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.DeleteReservedIPAddress(ctx, r.Address); err != nil {
		t.Fatalf("unreserving an address in use: %v", err)
	}
	if got, err := lc.GetNodeBalancer(ctx, nb.ID); err != nil || *got.IPv4 != r.Address {
		t.Fatalf("NB after unreserve = %v, %v", got, err)
	}
	if err := lc.DeleteNodeBalancer(ctx, nb.ID); err != nil {
		t.Fatal(err)
	}
	again, err := lc.CreateNodeBalancer(ctx, linodego.NodeBalancerCreateOptions{Region: "local"})
	if err != nil || *again.IPv4 != r.Address {
		t.Fatalf("the freed address must be handed out again: %v, %v", again, err)
	}
}

func TestReservedIPsAndProfileScopes(t *testing.T) {
	e := newEnv(t)
	srv := e.serve()
	admin := client(srv, e.token)
	ctx := context.Background()
	nbOnly := client(srv, newToken(t, admin, "nodebalancers:read_write"))
	ipsRO := client(srv, newToken(t, admin, "ips:read_only"))
	ipsRW := client(srv, newToken(t, admin, "ips:read_write"))

	if _, err := nbOnly.ListReservedIPAddresses(ctx, nil); status(err) != http.StatusForbidden {
		t.Errorf("nodebalancers-only token listing reserved ips: %v, want 403", err)
	}
	if _, err := ipsRO.ListReservedIPAddresses(ctx, nil); err != nil {
		t.Errorf("ips:read_only listing: %v", err)
	}
	if _, err := ipsRO.ReserveIPAddress(ctx, linodego.ReserveIPOptions{Region: "local"}); status(err) != http.StatusForbidden {
		t.Errorf("ips:read_only reserving: %v, want 403", err)
	}
	if _, err := ipsRW.ReserveIPAddress(ctx, linodego.ReserveIPOptions{Region: "local"}); err != nil {
		t.Errorf("ips:read_write reserving: %v", err)
	}

	// The profile: any valid token, whatever its scopes; 401 without one.
	for _, lc := range []*linodego.Client{admin, nbOnly, ipsRO} {
		p, err := lc.GetProfile(ctx)
		if err != nil || p.Username != ProfileUsername || p.UID != 1 || p.Restricted {
			t.Errorf("GetProfile = %+v, %v", p, err)
		}
	}
	if _, err := client(srv, "not-a-token").GetProfile(ctx); status(err) != http.StatusUnauthorized {
		t.Errorf("GetProfile with a bad token: %v, want 401", err)
	}
	if _, err := client(srv, "").GetProfile(ctx); status(err) != http.StatusUnauthorized {
		t.Errorf("GetProfile without a token: %v, want 401", err)
	}
}
