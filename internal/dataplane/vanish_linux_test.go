package dataplane

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// netnsEchoEnv names the address TestNetnsEchoHelper listens on, when the test binary
// is run again inside a network namespace as a node.
const netnsEchoEnv = "NB_TEST_NETNS_ECHO"

// TestNetnsEchoHelper is not a test: run by TestTCPSessionEndsWhenNodeVanishes inside
// its network namespace, it is the node, an echo server.
func TestNetnsEchoHelper(t *testing.T) {
	addr := os.Getenv(netnsEchoEnv)
	if addr == "" {
		t.Skip("the node of TestTCPSessionEndsWhenNodeVanishes, run inside its namespace")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(c, c); c.Close() }()
	}
}

// TestTCPSessionEndsWhenNodeVanishes: a node that disappears without a word (its link
// goes down: no FIN, no reset, nothing) is found dead by keep-alive and its session
// ends, the client's side closed. The keep-alive figures are shortened to 1 s idle,
// 1 s apart, 2 probes; the real ones (60 s, 10 s, 6) give 120 s.
func TestTCPSessionEndsWhenNodeVanishes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	ns := fmt.Sprintf("nbka%d", os.Getpid())
	hostIf, nodeIf := ns+"a", ns+"b"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ns).Run()
		exec.Command("ip", "link", "del", hostIf).Run()
	})
	run("netns", "add", ns)
	run("link", "add", hostIf, "type", "veth", "peer", "name", nodeIf)
	run("link", "set", nodeIf, "netns", ns)
	run("addr", "add", "198.18.77.1/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", ns, "addr", "add", "198.18.77.2/30", "dev", nodeIf)
	run("-n", ns, "link", "set", nodeIf, "up")
	const nodeAddr = "198.18.77.2:9000"
	nodeProc := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetnsEchoHelper$")
	nodeProc.Env = append(os.Environ(), netnsEchoEnv+"="+nodeAddr)
	if err := nodeProc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeProc.Process.Kill(); nodeProc.Wait() })
	waitFor(t, 10*time.Second, "the node in its namespace", func() bool {
		c, err := net.DialTimeout("tcp", nodeAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	savedIdle, savedInterval, savedCount, savedAfter := keepIdle, keepInterval, keepCount, keepAliveAfter
	keepIdle, keepInterval, keepCount, keepAliveAfter = 1, 1, 2, 10*time.Millisecond
	t.Cleanup(func() {
		keepIdle, keepInterval, keepCount, keepAliveAfter = savedIdle, savedInterval, savedCount, savedAfter
	})
	e := newEnv(t, "127.0.68.0/24")
	nb := e.create(config(model.ProtocolTCP, 9000, node("gone", nodeAddr, 50)))
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("echo through the session: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // keepAliveAfter has passed
	run("-n", ns, "link", "set", nodeIf, "down")
	gone := time.Now()
	_, err = c.Read(b[:])
	took := time.Since(gone)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the session outlived its vanished node by %v", took)
	}
	// 1 s idle + 2 probes 1 s apart, then the reset; the kernel's timers are coarse.
	if took < 2*time.Second || took > 8*time.Second {
		t.Errorf("the session ended %v after the node vanished (%v), want about 3 s", took, err)
	}
}
