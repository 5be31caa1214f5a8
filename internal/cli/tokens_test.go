package cli

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTokenCreateListRevoke(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	r := e.run("token", "create", "--label", "ci", "--scopes", "nodebalancers:read_only", "--expiry", "30d", "--json")
	if r.code != 0 || r.stderr != "Save the token now: its secret is not shown again.\n" {
		t.Fatalf("token create: %+v", r)
	}
	tok := decodeOne(t, r.stdout)
	secret, _ := tok["token"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(secret) || tok["scopes"] != "nodebalancers:read_only" {
		t.Fatalf("created token %v", tok)
	}
	exp, err := time.Parse("2006-01-02T15:04:05", tok["expiry"].(string))
	if d := time.Until(exp); err != nil || d < 29*24*time.Hour || d > 30*24*time.Hour {
		t.Fatalf("expiry %v (%v), want 30 days from now", tok["expiry"], err)
	}

	// The new read-only token reads, and may not write.
	ro := &testEnv{t: t, url: e.url, token: secret}
	ro.ok("nodebalancers", "list")
	if r := ro.run("nodebalancers", "create"); r.code != 1 || r.stderr != "Your OAuth token is not authorized to use this endpoint.\n" {
		t.Fatalf("write with a read-only token: %+v", r)
	}

	// The list shows the table columns and never the whole secret.
	ls := lines(e.ok("token", "list"))
	if h := strings.Fields(ls[0]); !slices.Equal(h, tokenColumns) || len(ls) != 3 {
		t.Fatalf("token list %q", ls)
	}
	if strings.Contains(strings.Join(ls, "\n"), secret) || !strings.Contains(ls[2], secret[:16]) {
		t.Fatalf("token list shows %q; want the prefix %s only", ls[2], secret[:16])
	}

	e.ok("token", "revoke", id(tok))
	if r := ro.run("nodebalancers", "list"); r.code != 1 || r.stderr != "Invalid Token\n" {
		t.Fatalf("revoked token still works: %+v", r)
	}
	if l := e.objects("tokens", "list"); len(l) != 1 || l[0]["label"] != "bootstrap" {
		t.Fatalf("tokens after revoke: %v", l)
	}
	if r := e.run("token", "delete", id(tok)); r.code != 1 || r.stderr != "Not found\n" {
		t.Fatalf("revoking twice: %+v", r)
	}
}

func TestTokenCreatePrintsTheSecretInEveryFormat(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	r := e.run("token", "create", "--label", "script", "--text", "--no-headers", "--format", "token")
	if r.code != 0 || !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(r.stdout) {
		t.Fatalf("token create --text --format token: %+v", r)
	}
	secret := strings.TrimSpace(r.stdout)
	// A token made without --scopes gets its maker's ("*" here).
	(&testEnv{t: t, url: e.url, token: secret}).ok("nodebalancers", "create", "--label", "by-script")
}

func TestExpiryValue(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in, want string
		usage    bool
	}{
		{"30d", "2026-02-01T03:04:05", false},
		{"12h", "2026-01-02T15:04:05", false},
		{"90m", "2026-01-02T04:34:05", false},
		{"2027-01-01T00:00:00", "2027-01-01T00:00:00", false}, // the API's own form passes through
		{"2027-01-01T00:00:00+02:00", "2027-01-01T00:00:00+02:00", false},
		{"0d", "", true},
		{"-1h", "", true},
	}
	for _, tc := range tests {
		got, err := expiryValue(tc.in, now)
		if (err != nil) != tc.usage || got != tc.want {
			t.Errorf("expiryValue(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.usage)
		}
	}
}
