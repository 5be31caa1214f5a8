package cli

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestFrontendPoolTakesIPv6BesideIPv4(t *testing.T) {
	for _, c := range []struct {
		pool string
		want []netip.Prefix
		err  string
	}{
		{"127.0.1.0/24,fd00:1::/64", []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24"), netip.MustParsePrefix("fd00:1::/64")}, ""},
		{"fd00:1::/64", nil, "at least one IPv4 network"},
		{"fd00:1::/64%eth0", nil, "not a CIDR"},
	} {
		var f serveFlags
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		f.bind(fs)
		if err := fs.Parse([]string{"--frontend-pool", c.pool, "--data", t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "--frontend-pool") {
				t.Errorf("%s: %v, want an error naming --frontend-pool and saying %q", c.pool, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(cfg.FrontendPool, c.want) {
			t.Errorf("%s: %v %v", c.pool, cfg.FrontendPool, err)
		}
	}
}
