package udpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
)

func TestRepliesComeFromTheFrontendAndDatagramsPassIntact(t *testing.T) {
	r := newRig(t, balance.RoundRobin, time.Minute, echoAt(0))
	c := r.client("127.0.66.100:0")
	for _, size := range []int{0, 1, 1472, 9000, 65507} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i*7 + size)
		}
		got, from := r.ask(c, msg)
		if from != r.p.Addr() {
			t.Fatalf("reply came from %v, want the frontend %v", from, r.p.Addr())
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%d-byte datagram came back as %d bytes, or altered", size, len(got))
		}
	}
	if r.p.Sessions() != 1 {
		t.Errorf("%d sessions for one client address and port, want 1", r.p.Sessions())
	}
}

func TestASessionKeepsItsNodeAndSessionsSpread(t *testing.T) {
	r := newRig(t, balance.RoundRobin, time.Minute, echoAt(0), echoAt(1), echoAt(2))
	seen := map[string]int{}
	for i := range 30 {
		c := r.client(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 67, byte(1 + i)}), 0).String())
		first, _ := r.ask(c, []byte("who?"))
		for range 5 {
			if got, _ := r.ask(c, []byte("who?")); !bytes.Equal(got, first) {
				t.Fatalf("client %d moved from %s to %s within its session", i, first, got)
			}
		}
		seen[string(first)]++
	}
	for _, n := range []string{"nodeA", "nodeB", "nodeC"} {
		if seen[n] != 10 {
			t.Errorf("round robin gave %s %d of 30 sessions, want 10 (%v)", n, seen[n], seen)
		}
	}
	if got := r.nb.Connections.Load(); got != 30 {
		t.Errorf("NodeBalancer counted %d sessions, want 30", got)
	}
}

func TestAnIdleSessionEndsAndFreesItsSocket(t *testing.T) {
	r := newRig(t, balance.RoundRobin, 150*time.Millisecond, echoAt(0))
	c := r.client("127.0.66.101:0")
	r.ask(c, []byte("hello"))
	if r.p.Sessions() != 1 || r.nb.Active.Load() != 1 || r.p.Snapshot().Pool.Node(0).State.Active() != 1 {
		t.Fatalf("after one datagram: %d sessions, %d active", r.p.Sessions(), r.nb.Active.Load())
	}
	// Traffic keeps it alive past the timeout.
	for range 4 {
		time.Sleep(60 * time.Millisecond)
		r.ask(c, []byte("still here"))
	}
	if r.p.Sessions() != 1 {
		t.Fatal("a session with traffic every 60 ms ended with a 150 ms timeout")
	}
	eventually(t, "the idle session to end", func() bool { return r.p.Sessions() == 0 })
	if r.nb.Active.Load() != 0 || r.cfg.Active.Load() != 0 || r.backends[0].ctr.Active.Load() != 0 || r.p.Snapshot().Pool.Node(0).State.Active() != 0 {
		t.Error("active counts not back to 0 after the session ended")
	}
	eventually(t, "the access log entry", func() bool { return len(r.entries()) == 1 })
	e := r.entries()[0]
	if e.End != EndIdle || e.DatagramsIn != 5 || e.DatagramsOut != 5 || e.BytesIn != 5+4*10 || e.NodeID != 1 {
		t.Errorf("access log entry %+v", e)
	}
	// The next datagram starts a new session.
	r.ask(c, []byte("back"))
	if r.nb.Connections.Load() != 2 {
		t.Errorf("%d sessions counted, want 2", r.nb.Connections.Load())
	}
}

func TestPortUnreachableIsAPassiveFailureAndTheSessionMoves(t *testing.T) {
	// A port nothing listens on: bind one, note it, close it.
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 66, 20)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	dead.Close()
	r := newRig(t, balance.RoundRobin, time.Minute, deadAddr, echoAt(1))
	c := r.client("127.0.66.102:0")
	buf := make([]byte, 100)
	// The first session goes to the dead node (round robin starts there).
	c.WriteToUDPAddrPort([]byte("who?"), r.p.Addr())
	eventually(t, "the ICMP error to be reported", func() bool { return r.backends[0].failures.Load() > 0 })
	got, _ := r.ask(c, []byte("who?"))
	if string(got) != "nodeB" {
		t.Fatalf("after the port-unreachable the session went to %q", got)
	}
	_ = buf
	eventually(t, "the moved session's log entry", func() bool {
		for _, e := range r.entries() {
			if e.End == EndICMP && e.NodeID == 1 {
				return true
			}
		}
		return false
	})
}

func TestCloseEndsEverySession(t *testing.T) {
	r := newRig(t, balance.RoundRobin, time.Minute, echoAt(0))
	for i := range 5 {
		c := r.client(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 68, byte(1 + i)}), 0).String())
		r.ask(c, []byte("x"))
	}
	r.p.Close()
	if r.p.Sessions() != 0 || r.nb.Active.Load() != 0 {
		t.Fatalf("after Close: %d sessions, %d active", r.p.Sessions(), r.nb.Active.Load())
	}
	if n := len(r.entries()); n != 5 {
		t.Errorf("%d access log entries, want 5", n)
	}
}

func TestSessionsOverTheCapAreRefused(t *testing.T) {
	var active atomic.Int64
	r := newRigWith(t, balance.RoundRobin, time.Minute, func(o *Options) { o.Active, o.MaxSessions = &active, 2 }, echoAt(0))
	for i := range 2 {
		c := r.client(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 70, byte(1 + i)}), 0).String())
		r.ask(c, []byte("x"))
	}
	c := r.client("127.0.70.3:0")
	c.WriteToUDPAddrPort([]byte("x"), r.p.Addr())
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := c.ReadFromUDPAddrPort(make([]byte, 16)); err == nil {
		t.Fatal("a third session was served with a cap of 2")
	}
	if active.Load() != 2 || r.nb.Refused.Load() != 1 || r.cfg.Refused.Load() != 1 {
		t.Errorf("active %d, refused %d/%d; want 2 and 1", active.Load(), r.nb.Refused.Load(), r.cfg.Refused.Load())
	}
	r.p.Close()
	if active.Load() != 0 {
		t.Errorf("active %d after Close, want 0", active.Load())
	}
}

func TestLeastConnCountsOpenSessions(t *testing.T) {
	r := newRig(t, balance.LeastConn, time.Minute, echoAt(0), echoAt(1))
	got := map[string]int{}
	for i := range 6 {
		c := r.client(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 71, byte(1 + i)}), 0).String())
		b, _ := r.ask(c, []byte("who?"))
		got[string(b)]++
	}
	if got["nodeA"] != 3 || got["nodeB"] != 3 {
		t.Errorf("leastconn spread 6 open sessions %v, want 3 and 3", got)
	}
	pool := r.p.Snapshot().Pool
	if pool.Node(0).State.Active() != 3 || pool.Node(1).State.Active() != 3 {
		t.Errorf("active sessions per node %d and %d, want 3 and 3", pool.Node(0).State.Active(), pool.Node(1).State.Active())
	}
}
