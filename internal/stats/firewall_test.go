package stats

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestAccessLogLineOfAFirewallDrop(t *testing.T) {
	var buf bytes.Buffer
	a := NewAccessLog(&buf, 4)
	a.FirewallDrop(3, 4, netip.MustParseAddrPort("[fd00:63::2]:5000"), netip.MustParseAddrPort("[fd00:61::1]:80"), "deny-office")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &got); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	want := map[string]any{"msg": "access", "proto": "tcp", "nodebalancer_id": 3.0, "config_id": 4.0,
		"client": "[fd00:63::2]:5000", "addr": "[fd00:61::1]:80", "failure": "firewall", "rule": "deny-office"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"node", "bytes_in", "method"} {
		if _, ok := got[k]; ok {
			t.Errorf("a drop line has %s: %s", k, strings.TrimSpace(buf.String()))
		}
	}
}
