package multihost

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/arp"

	"github.com/nodebalancer/nodebalancer/internal/ha"
)

// bigSize is the length of the backend's /big answer: far more than a TCP window.
const bigSize = 8 << 20

// bigByte is byte i of /big's answer.
func bigByte(i int) byte { return byte(i % 251) }

// dialClient opens a connection to addr from the client namespace, with a receive
// buffer of rcvbuf bytes when not 0 (which bounds the window the client offers).
func (l *haLab) dialClient(addr string, rcvbuf int) (net.Conn, error) {
	var c net.Conn
	err := l.inNS("client", func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second}
		if rcvbuf > 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
				})
				if err != nil {
					return err
				}
				return serr
			}
		}
		c, err = d.Dial("tcp", addr)
		return err
	})
	return c, err
}

// bigRequest fetches /big through addr on a connection whose window is 16 KiB (32 KiB
// as the kernel doubles it), so the answer needs the client's acknowledgements all
// along; started is closed once the first 256 KiB arrived (or it failed before).
func (l *haLab) bigRequest(addr string, started chan<- struct{}) (err error) {
	once := sync.OnceFunc(func() { close(started) })
	defer once()
	c, err := l.dialClient(addr, 16<<10)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: nb\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	buf := make([]byte, 32<<10)
	n := 0
	for {
		m, err := resp.Body.Read(buf)
		for i := range m {
			if buf[i] != bigByte(n+i) {
				return fmt.Errorf("byte %d of /big is %d, want %d", n+i, buf[i], bigByte(n+i))
			}
		}
		n += m
		if n >= 256<<10 {
			once()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", n, bigSize, err)
		}
	}
	if n != bigSize {
		return fmt.Errorf("/big: %d bytes, want %d", n, bigSize)
	}
	return nil
}

// askOn sends GET / on an open connection and checks the answer.
func askOn(c net.Conn) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: nb\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && (resp.StatusCode != 200 || string(b) != "ok\n") {
		err = fmt.Errorf("status %d, %q", resp.StatusCode, b)
	}
	return err
}

// TestFrontendHandover stops the holder (SIGTERM) of a NodeBalancer with an IPv4 and
// an IPv6 frontend address, NB_HANDOVER_ROUNDS times (2 unless set), under load on
// both addresses, with connections in flight at the signal: an 8 MiB answer being
// sent through a 32 KiB window and a connection made before the signal whose request
// is sent after the next host holds the addresses, on each address, and a 1.5 s
// request. Every one of them must succeed: the next holder forwards their packets
// to the stopping host, which drains them (internal/ha, handover.go). Figures:
// docs/ha.md.
func TestFrontendHandover(t *testing.T) {
	rounds := 2
	if s := os.Getenv("NB_HANDOVER_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 50 {
			t.Fatalf("NB_HANDOVER_ROUNDS=%q: want 1 to 50", s)
		}
		rounds = n
	}
	hostIDs := []string{"a", "b"}
	l := newHALab(t, hostIDs...)
	l.serveBackend()
	endpoint, cli := startHAEtcd(t)
	const pool6 = "fd00:18:8::100/120"
	hosts := map[string]*host{}
	start := func(id string) *host {
		t.Helper()
		h := l.startHAHost(t, endpoint, id, haPool+","+pool6, "10s")
		hosts[id] = h
		return h
	}
	for _, id := range hostIDs {
		start(id)
	}
	label := "ha-handover"
	nb := webNB(t, hosts["a"], label)
	if nb.IPv6 == nil || !netip.MustParsePrefix(pool6).Contains(netip.MustParseAddr(*nb.IPv6)) {
		t.Fatalf("NodeBalancer ipv6 %v: want one from %s", nb.IPv6, pool6)
	}
	vip4 := netip.MustParseAddr(*nb.IPv4)
	fronts := []string{netip.AddrPortFrom(vip4, 80).String(), netip.AddrPortFrom(netip.MustParseAddr(*nb.IPv6), 80).String()}
	for _, front := range fronts {
		deadline := time.Now().Add(15 * time.Second)
		for {
			var err error
			l.inNS("client", func() error { _, err = request(front, "/"); return nil })
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not served within 15 s: %v (holder %q)", front, err, holderOf(t, cli))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, id := range hostIDs {
		if strings.Contains(hosts[id].log(), "connection forwarding at a handover is off") {
			t.Fatalf("host %s runs without handover forwarding:\n%s", id, hosts[id].log())
		}
	}

	failedRounds := 0
	for round := 1; round <= rounds; round++ {
		old := holderOf(t, cli)
		if hosts[old] == nil {
			t.Fatalf("round %d: holder %q is not one of the hosts", round, old)
		}
		w := l.watchARP(vip4)
		loads := []*load{l.startLoad(fronts[0]), l.startLoad(fronts[1])}
		time.Sleep(500 * time.Millisecond)

		// In flight at the signal, on each address: an answer far larger than the
		// window, still coming; a connection made, its request not sent yet.
		var inflight sync.WaitGroup
		errs := map[string]error{}
		var mu sync.Mutex
		note := func(name string, err error) { mu.Lock(); errs[name] = err; mu.Unlock() }
		var fresh []net.Conn
		for i, front := range fronts {
			fam := []string{"ipv4", "ipv6"}[i]
			started := make(chan struct{})
			inflight.Add(1)
			go func() { defer inflight.Done(); note(fam+" 8 MiB answer", l.bigRequest(front, started)) }()
			<-started
			c, err := l.dialClient(front, 0)
			if err != nil {
				t.Fatalf("round %d: connect to %s before the signal: %v", round, front, err)
			}
			fresh = append(fresh, c)
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			var b string
			var err error
			l.inNS("client", func() error { b, err = request(fronts[0], "/slow"); return nil })
			if err == nil && b != "slow-ok\n" {
				err = fmt.Errorf("answered %q", b)
			}
			note("ipv4 1.5 s request", err)
		}()
		time.Sleep(100 * time.Millisecond)

		t0 := time.Now()
		hosts[old].cmd.Process.Signal(syscall.SIGTERM)
		var next string
		for deadline := time.Now().Add(5 * time.Second); ; {
			if next = holderOf(t, cli); next != "" && next != old {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: nobody took over from %s in 5 s", round, old)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(t0)
		// The next holder announced the addresses: the requests on the connections
		// made to the old one go to the next one first.
		time.Sleep(100 * time.Millisecond)
		for i, c := range fresh {
			note([]string{"ipv4", "ipv6"}[i]+" request on a connection made before", askOn(c))
		}
		select {
		case <-hosts[old].exited:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: %s did not exit in 20 s", round, old)
		}
		exited := time.Since(t0)
		inflight.Wait()
		time.Sleep(500 * time.Millisecond)
		var total, failed int
		var loadErrs []string
		for _, ld := range loads {
			n, f, _, _, e := summarize(ld.finish(), t0)
			total, failed, loadErrs = total+n, failed+f, append(loadErrs, e...)
		}
		answered, macs, double := w.stop()
		forwarded := strings.Contains(hosts[next].log(), `"draining_hosts":"`+old+`"`)

		bad := failed
		var inflightErrs []string
		for name, err := range errs {
			if err != nil {
				bad++
				inflightErrs = append(inflightErrs, name+": "+err.Error())
			}
		}
		if bad > 0 || len(double) > 0 {
			failedRounds++
		}
		t.Logf("round %d: SIGTERM of %s, %s held after %s, forwarding to %s logged: %v; %s exited after %s; load %d requests, %d failed %v; in flight %d, failed %v; ARP %d rounds by %v, %d by two hosts",
			round, old, next, took.Round(time.Millisecond), old, forwarded, old, exited.Round(time.Millisecond),
			total, failed, loadErrs, len(errs), inflightErrs, answered, macs, len(double))
		if failed != 0 || len(inflightErrs) > 0 {
			t.Errorf("round %d: %d of %d requests of the load failed (%v); in flight at the signal failed: %v\n%s's log:\n%s\n%s's log:\n%s",
				round, failed, total, loadErrs, inflightErrs, old, hosts[old].log(), next, hosts[next].log())
		}
		if len(errs) != 5 {
			t.Errorf("round %d: %d requests in flight accounted for, want 5", round, len(errs))
		}
		if !forwarded {
			t.Errorf("round %d: %s never logged forwarding to %s:\n%s", round, next, old, hosts[next].log())
		}
		if len(double) > 0 {
			t.Errorf("round %d: two hosts answered ARP for %s at once: %v", round, vip4, double)
		}
		// Nothing is left behind: the old host's drained addresses on lo and both
		// hosts' handover rules went with the drain.
		if out := l.nsOut(old, "ip", "addr", "show", "dev", "lo"); strings.Contains(out, vip4.String()) || strings.Contains(out, *nb.IPv6) {
			t.Errorf("round %d: %s left the drained addresses on lo:\n%s", round, old, out)
		}
		if _, err := os.Stat("/usr/sbin/nft"); err == nil {
			waitRulesGone(t, l, next)
			if out := l.nsOut(old, "nft", "list", "tables"); strings.Contains(out, "nodebalancer") {
				t.Errorf("round %d: %s left its handover table:\n%s", round, old, out)
			}
		}
		start(old)
	}
	t.Logf("%d handovers, %d with a failure", rounds, failedRounds)
}

// mac is the hardware address of role's eth0.
func (l *haLab) mac(role string) string {
	return strings.TrimSpace(l.nsOut(role, "cat", "/sys/class/net/eth0/address"))
}

// nsOut runs a command in role's namespace and returns its output.
func (l *haLab) nsOut(role string, argv ...string) string {
	out, _ := execOut(append([]string{"ip", "netns", "exec", l.ns[role]}, argv...)...)
	return out
}

// waitRulesGone waits up to 5 s for role's handover table to go (the drain record
// lapsed or was deleted: the next holder stops forwarding).
func waitRulesGone(t *testing.T, l *haLab, role string) {
	t.Helper()
	var out string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out = l.nsOut(role, "nft", "list", "tables"); !strings.Contains(out, "nodebalancer") {
			return
		}
	}
	t.Errorf("%s kept its handover table after the drain ended:\n%s", role, out)
}

func execOut(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// garpWatch records, in the client namespace, every gratuitous ARP request for an
// address (sender = target = the address): the hosts' announcements, in order.
type garpWatch struct {
	c    *arp.Client
	mu   sync.Mutex
	macs []string // sender hardware address of each announcement, in arrival order
	done chan struct{}
}

func (l *haLab) watchGARP(vip netip.Addr) *garpWatch {
	l.t.Helper()
	w := &garpWatch{done: make(chan struct{})}
	if err := l.inNS("client", func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		w.c, err = arp.Dial(ifi)
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		for {
			p, _, err := w.c.Read()
			if err != nil {
				return
			}
			if p.Operation == arp.OperationRequest && p.SenderIP == vip && p.TargetIP == vip {
				w.mu.Lock()
				w.macs = append(w.macs, p.SenderHardwareAddr.String())
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// stop ends the watch and returns the announcements' senders in order, and whether
// one of them announced again after another host had announced after it.
func (w *garpWatch) stop() (macs []string, backwards bool) {
	w.c.Close()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	gone := map[string]bool{} // hosts another announced after
	for i, m := range w.macs {
		if gone[m] {
			backwards = true
		}
		if i > 0 && w.macs[i-1] != m {
			gone[w.macs[i-1]] = true
		}
	}
	return w.macs, backwards
}

// TestFrontendHandoverChain stops the holder, then, while it still drains, the next
// holder too: the third host forwards to the newest draining host what is not its
// own, and that one forwards on to the first what is not its own. An 8 MiB answer
// through a 32 KiB window is in flight on each of the two stopped hosts.
//
// The second holder is stopped within the 0.4 s of its own announcements: none of
// them may reach the client after the third host's (the client would send the
// third host's connections to it; docs/ha.md, "Two handovers in a row").
func TestFrontendHandoverChain(t *testing.T) {
	hostIDs := []string{"a", "b", "c"}
	l := newHALab(t, hostIDs...)
	l.serveBackend()
	endpoint, cli := startHAEtcd(t)
	hosts := map[string]*host{}
	for _, id := range hostIDs {
		hosts[id] = l.startHAHost(t, endpoint, id, haPool, "10s")
	}
	label := "ha-chain"
	nb := webNB(t, hosts["a"], label)
	front := netip.AddrPortFrom(netip.MustParseAddr(*nb.IPv4), 80).String()
	l.waitServed(t, cli, front, 15*time.Second)
	time.Sleep(ha.CampaignGate) // every host may take over at once
	waitHolder := func(not ...string) string {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			h := holderOf(t, cli)
			if h != "" && !slices.Contains(not, h) {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("nobody but %v holds after 5 s", not)
			}
		}
	}
	first := waitHolder()
	w := l.watchGARP(netip.MustParseAddr(*nb.IPv4))
	ld := l.startLoad(front)
	errs := make(chan error, 2)
	big := func() {
		started := make(chan struct{})
		go func() { errs <- l.bigRequest(front, started) }()
		<-started
	}
	big() // on the first holder
	hosts[first].cmd.Process.Signal(syscall.SIGTERM)
	second := waitHolder(first)
	time.Sleep(100 * time.Millisecond)
	big() // on the second, while the first drains
	hosts[second].cmd.Process.Signal(syscall.SIGTERM)
	third := waitHolder(first, second)
	var failed []string
	for range 2 {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	for _, id := range []string{first, second} {
		select {
		case <-hosts[id].exited:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not exit in 20 s", id)
		}
	}
	total, loadFailed, _, _, loadErrs := summarize(ld.finish(), time.Time{})
	garps, backwards := w.stop()
	t.Logf("%s stopped, %s held and was stopped while %s drained, %s holds: in-flight 8 MiB answers failed %v; load %d requests, %d failed %v; announcements by %v",
		first, second, first, third, failed, total, loadFailed, loadErrs, garps)
	if backwards {
		t.Errorf("a host announced the address again after the next holder had (senders in order: %v); macs: %s=%s %s=%s %s=%s",
			garps, first, l.mac(first), second, l.mac(second), third, l.mac(third))
	}
	if len(failed) > 0 || loadFailed > 0 {
		t.Errorf("across two handovers in a row: in flight failed %v; %d of %d requests failed %v\n%s's log:\n%s\n%s's log:\n%s\n%s's log:\n%s",
			failed, loadFailed, total, loadErrs, first, hosts[first].log(), second, hosts[second].log(), third, hosts[third].log())
	}
}
