package ha

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/icmp"
	"golang.org/x/sys/unix"
)

// inNS runs f on an OS thread switched into namespace ns (never switched back: Go
// retires the thread with the goroutine); sockets f makes stay there.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// announce sends, from one end of a veth pair, gratuitous ARP for an IPv4 address and
// unsolicited neighbour advertisements for an IPv6 one, each three times, carrying the
// interface's hardware address; the other end, in its own namespace, sees them all.
func TestAnnounceARPAndNDP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("announcing needs root to create network namespaces (CI runs as root)")
	}
	suffix := fmt.Sprintf("%06x", rand.IntN(1<<24))
	nsA, nsB := "nbann-a-"+suffix, "nbann-b-"+suffix
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", nsA).Run()
		exec.Command("ip", "netns", "del", nsB).Run()
	})
	ip("netns", "add", nsA)
	ip("netns", "add", nsB)
	ip("-n", nsA, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", nsB)
	ip("-n", nsA, "addr", "add", "198.18.9.1/24", "dev", "va")
	ip("-n", nsB, "addr", "add", "198.18.9.2/24", "dev", "vb")
	// Link-local addresses given, not left to autoconfiguration (off in some
	// containers): NDP speaks from them.
	ip("-n", nsA, "addr", "add", "fe80::1/64", "dev", "va", "nodad")
	ip("-n", nsB, "addr", "add", "fe80::2/64", "dev", "vb", "nodad")
	ip("-n", nsA, "link", "set", "va", "up")
	ip("-n", nsB, "link", "set", "vb", "up")
	// As on a host whose interface has long been up: IPv6 is ready once duplicate
	// address detection of the link-local addresses ended.
	for _, x := range [][2]string{{nsA, "va"}, {nsB, "vb"}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _ := exec.Command("ip", "-n", x[0], "-6", "addr", "show", "dev", x[1]).Output()
			if strings.Contains(string(out), "fe80::") && !strings.Contains(string(out), "tentative") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("IPv6 on %s not ready in 10 s:\n%s", x[1], out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	vip4, vip6 := netip.MustParseAddr("198.18.9.193"), netip.MustParseAddr("fd00:198:18:9::193")
	var macA net.HardwareAddr
	if err := inNS(nsA, func() error {
		ifi, err := net.InterfaceByName("va")
		macA = ifi.HardwareAddr
		return err
	}); err != nil {
		t.Fatal(err)
	}

	var ac *arp.Client
	var nc *icmp.PacketConn
	if err := inNS(nsB, func() error {
		ifi, err := net.InterfaceByName("vb")
		if err != nil {
			return err
		}
		if ac, err = arp.Dial(ifi); err != nil {
			return err
		}
		// Any address: a raw socket bound to a unicast one does not get multicast.
		nc, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	defer nc.Close()
	deadline := time.Now().Add(3 * time.Second)
	ac.SetReadDeadline(deadline)
	nc.SetReadDeadline(deadline)

	var wg sync.WaitGroup
	var garps, nas int
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			p, _, err := ac.Read()
			if err != nil {
				return
			}
			if p.Operation == arp.OperationRequest && p.SenderIP == vip4 && p.TargetIP == vip4 && p.SenderHardwareAddr.String() == macA.String() {
				garps++
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			b := make([]byte, 1500)
			n, _, err := nc.ReadFrom(b)
			if err != nil {
				return
			}
			m, err := ndp.ParseMessage(b[:n])
			if err != nil {
				continue
			}
			na, ok := m.(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != vip6 || !na.Override || na.Solicited {
				continue
			}
			for _, o := range na.Options {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target && lla.Addr.String() == macA.String() {
					nas++
				}
			}
		}
	}()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	inNS(nsA, func() error { announce(context.Background(), "va", []netip.Addr{vip4, vip6}, log); return nil })
	wg.Wait()
	if garps != announceCount || nas != announceCount {
		t.Errorf("seen %d gratuitous ARPs and %d neighbour advertisements carrying %s; want %d of each", garps, nas, macA, announceCount)
	}
}
