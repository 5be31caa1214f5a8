package testnet

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// netnsEnv marks a test binary re-executed inside its own network namespace.
const netnsEnv = "NODEBALANCER_TEST_NETNS"

// InNetNS runs the calling test in a network namespace of its own, where each of
// local (IPv6 networks, e.g. fd00:61::/48) is routed to the loopback device as an
// AnyIP route (`ip -6 route add local <net> dev lo`), so that the test can bind and
// connect any address of them, as clients and as servers (net.ipv6.ip_nonlocal_bind
// is set inside the namespace). Loopback's 127.0.0.0/8 and ::1 work as usual.
//
// The parent call re-executes the test binary for this one test with CLONE_NEWNET,
// reports the child's output and outcome, and returns false: the caller returns at
// once. In the child it sets the namespace up and returns true: the caller goes on.
// The namespace has no name and nothing outside holds it, so it disappears with the
// child process whatever happens. Without root (or without `ip`, or on another OS)
// the test is skipped with a message saying so.
func InNetNS(t *testing.T, local ...netip.Prefix) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		setupNetNS(t, local)
		return true
	}
	if runtime.GOOS != "linux" {
		t.Skip("IPv6 namespace tests need Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("IPv6 namespace tests need root to create a network namespace with an AnyIP route (CI runs them as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("IPv6 namespace tests need the ip command (iproute2)")
	}
	args := []string{"-test.run", "^" + strings.ReplaceAll(t.Name(), "/", "$/^") + "$", "-test.v", "-test.count=1"}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	t.Logf("in its own network namespace:\n%s", text)
	switch {
	case err != nil:
		t.Fatalf("the test failed in its network namespace: %v", err)
	case strings.Contains(text, "--- SKIP: "+t.Name()):
		t.Skip("skipped in its network namespace")
	case !strings.Contains(text, "--- PASS: "+t.Name()):
		t.Fatal("the test did not run in its network namespace")
	}
	return false
}

func setupNetNS(t *testing.T, local []netip.Prefix) {
	t.Helper()
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("link", "set", "lo", "up")
	for _, p := range local {
		if p.Addr().Is4() {
			run("route", "add", "local", p.String(), "dev", "lo")
		} else {
			run("-6", "route", "add", "local", p.String(), "dev", "lo")
		}
	}
	// Binding an address of an AnyIP route needs nonlocal binds for IPv6 (IPv4 binds
	// consult the routing table and work without).
	if err := os.WriteFile("/proc/sys/net/ipv6/ip_nonlocal_bind", []byte("1"), 0o644); err != nil {
		t.Fatalf("enable ip_nonlocal_bind in the test's namespace: %v", err)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6"); bytes.HasPrefix(b, []byte("1")) {
		t.Fatal("IPv6 is disabled on lo in the test's namespace (net.ipv6.conf.lo.disable_ipv6=1)")
	}
}
