package multihost

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// lab is a small network the test owns: a bridge in the root namespace
// (198.18.0.1/24, where etcd and the backends listen) and one namespace per host and
// for the client, each with a veth on the bridge. Hosts get the frontend range
// 198.19.0.0/24 as local addresses, so that each binds every frontend address in its
// own namespace; the client reaches them through the host its route names.
type lab struct {
	t      *testing.T
	suffix string
	bridge string
	ns     map[string]string // role → namespace name
	veths  []string          // root-namespace ends
	addr   map[string]string // role → address on the bridge
}

// The lab's addresses, all in 198.18.0.0/15 (RFC 2544, for benchmarking).
const (
	labGateway  = "198.18.0.1"
	labFrontend = "198.19.0.0/24"
	labBackends = "198.18.0.0/15"
)

func newLab(t *testing.T, hosts ...string) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("multi-host tests need root to create network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("multi-host tests need iproute2's ip")
	}
	// A random suffix: a lab being torn down (veths go away asynchronously with
	// their namespace) never collides with the next.
	l := &lab{t: t, suffix: fmt.Sprintf("%06x", rand.IntN(1<<24)), ns: map[string]string{}, addr: map[string]string{}}
	l.bridge = "nbmh" + l.suffix
	t.Cleanup(l.remove)
	l.ip("link", "add", l.bridge, "type", "bridge")
	l.ip("addr", "add", labGateway+"/24", "dev", l.bridge)
	l.ip("link", "set", l.bridge, "up")
	roles := append(append([]string{}, hosts...), "client")
	for i, role := range roles {
		ns := "nbmh-" + role + "-" + l.suffix
		veth := fmt.Sprintf("nbv%d%s", i, l.suffix)
		addr := fmt.Sprintf("198.18.0.%d", 2+i)
		if role == "client" {
			addr = "198.18.0.100"
		}
		l.ns[role], l.addr[role] = ns, addr
		l.veths = append(l.veths, veth)
		l.ip("netns", "add", ns)
		l.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip("link", "set", veth, "master", l.bridge)
		l.ip("link", "set", veth, "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		if role != "client" {
			l.ip("-n", ns, "route", "add", "local", labFrontend, "dev", "lo")
		}
	}
	return l
}

// ip runs one ip command, failing the test when it fails.
func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the veths (at once; a namespace's deletion takes its veths
// asynchronously), the namespaces and the bridge.
func (l *lab) remove() {
	for _, v := range l.veths {
		exec.Command("ip", "link", "del", v).Run()
	}
	for _, ns := range l.ns {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	exec.Command("ip", "link", "del", l.bridge).Run()
}

// via routes the client's frontend traffic through host role.
func (l *lab) via(role string) {
	l.t.Helper()
	l.ip("-n", l.ns["client"], "route", "replace", labFrontend, "via", l.addr[role])
}

// clientDial dials from inside the client namespace: the socket is made on a thread
// switched into it (and never switched back: the thread ends with its goroutine).
func (l *lab) clientDial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: Go retires the thread with the goroutine
		f, err := os.Open("/var/run/netns/" + l.ns["client"])
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
