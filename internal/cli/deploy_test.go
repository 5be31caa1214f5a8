package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// deploy/systemd/nodebalancer.service has what production needs (a dedicated user,
// only the three capabilities, descriptors for --max-conns, restarts, the address
// clean-up after a stop) and systemd-analyze verify finds nothing to say about it.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../deploy/systemd/nodebalancer.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"\nUser=nodebalancer\n",
		"\nAmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW\n",
		"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW\n",
		"\nRestart=on-failure\n",
		"\nExecStopPost=/usr/local/bin/nodebalancer frontend-release",
		"\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nNoNewPrivileges=yes\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	// Two descriptors per connection at the default --max-conns, with room to spare.
	i := strings.Index(unit, "\nLimitNOFILE=")
	if i < 0 {
		t.Fatal("no LimitNOFILE")
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(unit[i+len("\nLimitNOFILE="):], "\n", 2)[0]))
	if err != nil || n < 2*10000+4096 {
		t.Errorf("LimitNOFILE %d (%v): want at least 2 x --max-conns (10000) + 4096", n, err)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit's syntax is not verified")
	}
	// verify wants the programs to exist and the environment file to be readable.
	dir := t.TempDir()
	self, _ := os.Executable()
	env := filepath.Join(dir, "nodebalancer.default")
	def, err := os.ReadFile("../../deploy/systemd/nodebalancer.default")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(env, def, 0o644)
	unit = strings.ReplaceAll(unit, "/usr/local/bin/nodebalancer", self)
	unit = strings.ReplaceAll(unit, "EnvironmentFile=/etc/default/nodebalancer", "EnvironmentFile="+env)
	path := filepath.Join(dir, "nodebalancer.service")
	os.WriteFile(path, []byte(unit), 0o644)
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
