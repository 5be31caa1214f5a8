//go:build linux

package dataplane

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/proxyproto"
	"github.com/nodebalancer/nodebalancer/internal/stats"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// engines are the two ways of serving tcp configs, the epoll engine also with an own
// wait (Options.TCPOwnWait); the behaviour tests below run on each.
var engines = []string{TCPEngineEpoll, engineOwnWait, TCPEngineGoroutine}

// engineOwnWait names, in tests only, the epoll engine with 20 µs of busy polling and
// an own wait of 100 µs.
const engineOwnWait = "epoll+own-wait"

func withEngine(name string) func(*Options) {
	return func(o *Options) {
		if o.TCPEngine = name; name == engineOwnWait {
			o.TCPEngine, o.TCPOwnWait, o.TCPBusyPoll = TCPEngineEpoll, 100*time.Microsecond, 20*time.Microsecond
		}
	}
}

// servedBy reports which engine serves config id.
func servedBy(e *env, id int) string {
	e.plane.mu.Lock()
	defer e.plane.mu.Unlock()
	if l := e.plane.listeners[id]; l != nil && l.eng != nil {
		return TCPEngineEpoll
	}
	return TCPEngineGoroutine
}

// TestTCPEngineIsTheDefaultAndCanBeSwitchedOff: on Linux the epoll engine serves tcp
// configs unless the goroutine path is asked for; http configs never use it.
func TestTCPEngineIsTheDefaultAndCanBeSwitchedOff(t *testing.T) {
	for _, c := range []struct{ opt, want string }{{"", TCPEngineEpoll}, {TCPEngineEpoll, TCPEngineEpoll}, {TCPEngineGoroutine, TCPEngineGoroutine}} {
		t.Run("engine="+c.opt, func(t *testing.T) {
			e := newEnv(t, "127.0.170.0/24", withEngine(c.opt))
			echoServer(t, "127.0.171.2:9002", nil)
			e.create(config(model.ProtocolTCP, 9000, node("echo", "127.0.171.2:9002", 50)),
				config(model.ProtocolHTTP, 9001, node("web", "127.0.171.2:9002", 50)))
			if got := servedBy(e, 1); got != c.want {
				t.Errorf("tcp config served by %s, want %s", got, c.want)
			}
			if got := servedBy(e, 2); got != TCPEngineGoroutine {
				t.Errorf("http config served by %s", got)
			}
		})
	}
}

// TestTCPConnectFailureMovesToTheNextNode: a node that refuses connections is
// skipped for the client's session (passive failure counted against it), and every
// session reaches the node that answers.
func TestTCPConnectFailureMovesToTheNextNode(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			e := newEnv(t, "127.0.172.0/24", withEngine(eng))
			echoServer(t, "127.0.173.2:9002", nil)
			// 127.0.173.3:9002 has no listener: connects are refused.
			nb := e.create(config(model.ProtocolTCP, 9000, node("gone", "127.0.173.3:9002", 50), node("echo", "127.0.173.2:9002", 50)))
			for i := 0; i < 6; i++ {
				got := roundTrip(t, nb.IPv4+":9000", "ping")
				if got != "ping|echoed 4" {
					t.Fatalf("session %d: got %q", i, got)
				}
			}
		})
	}
}

// roundTrip sends msg, half-closes, and reads the answer to its end.
func roundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, msg)
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTCPNodeHalfCloseFirst: the node ends its side first (a banner, then FIN); the
// client still reads it to the end, then sends, and the node gets every byte of that
// before the session ends.
func TestTCPNodeHalfCloseFirst(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			e := newEnv(t, "127.0.174.0/24", withEngine(eng))
			got := make(chan []byte, 4)
			testnet.ServeConns(t, "127.0.175.2:9002", func(c net.Conn) {
				io.WriteString(c, "banner")
				c.(*net.TCPConn).CloseWrite()
				b, _ := io.ReadAll(c)
				got <- b
			})
			nb := e.create(config(model.ProtocolTCP, 9000, node("n", "127.0.175.2:9002", 50)))
			e.settle(1)
			<-got // the readiness probe's
			c, err := net.Dial("tcp", nb.IPv4+":9000")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			banner, err := io.ReadAll(c) // to the node's FIN
			if err != nil || string(banner) != "banner" {
				t.Fatalf("read %q, %v; want the banner and EOF", banner, err)
			}
			payload := make([]byte, 1<<20+7)
			rand.Read(payload)
			if _, err := c.Write(payload); err != nil {
				t.Fatalf("the client's side closed with the node's: %v", err)
			}
			c.(*net.TCPConn).CloseWrite()
			select {
			case b := <-got:
				if !bytes.Equal(b, payload) {
					t.Fatalf("the node got %d bytes, want %d", len(b), len(payload))
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the node never saw the client's end")
			}
		})
	}
}

// TestTCPHalfCloseTimeout: after the node has ended its side, a client that keeps
// its own open is ended after Timeouts.HalfClose (the node sees the end).
func TestTCPHalfCloseTimeout(t *testing.T) {
	const halfClose = 300 * time.Millisecond
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			e := newEnv(t, "127.0.176.0/24", withEngine(eng), func(o *Options) { o.Timeouts.HalfClose = halfClose })
			ended := make(chan time.Time, 4)
			testnet.ServeConns(t, "127.0.177.2:9002", func(c net.Conn) {
				io.WriteString(c, "bye")
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
				ended <- time.Now()
			})
			nb := e.create(config(model.ProtocolTCP, 9000, node("n", "127.0.177.2:9002", 50)))
			e.settle(1)
			<-ended
			c, err := net.Dial("tcp", nb.IPv4+":9000")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if b, err := io.ReadAll(c); err != nil || string(b) != "bye" {
				t.Fatalf("read %q, %v", b, err)
			}
			start := time.Now()
			select {
			case at := <-ended:
				if took := at.Sub(start); took > halfClose+500*time.Millisecond {
					t.Errorf("the half-closed session ended after %v, want about %v", took, halfClose)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the half-closed session was never ended")
			}
		})
	}
}

// TestTCPEngineHoldsManySessionsWithoutGoroutines: 400 sessions open at once all
// carry their bytes, and holding them takes no goroutine per session (the goroutine
// path takes two).
func TestTCPEngineHoldsManySessionsWithoutGoroutines(t *testing.T) {
	const sessions = 400
	e := newEnv(t, "127.0.178.0/24")
	echo := testnet.ServeConns(t, "127.0.179.2:0", func(c net.Conn) { io.Copy(c, c) })
	nb := e.create(config(model.ProtocolTCP, 9000, node("echo", echo.Addr().String(), 50)))
	e.settle(1)
	base := runtime.NumGoroutine() // the echo server's goroutines come on top: one per session
	fds := countFDs(t)
	conns := make([]net.Conn, 0, sessions)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < sessions; i++ {
		c, err := net.Dial("tcp", nb.IPv4+":9000")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := fmt.Sprintf("session %d", i)
			io.WriteString(c, msg)
			b := make([]byte, len(msg))
			if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
				errs <- fmt.Errorf("session %d: %q, %v", i, b, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.plane.opts.Stats.Config(1).Active.Load(); got != sessions {
		t.Errorf("%d active sessions counted, want %d", got, sessions)
	}
	// The echo server holds one goroutine per session; the balancer should add none.
	// The test's own client goroutines have called Done but may not have exited yet
	// (more of them with more Ps), so the count is given a moment to settle; the
	// goroutine path's two per session never would.
	extra := 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		if extra = runtime.NumGoroutine() - base - sessions; extra <= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if extra > 20 {
		t.Errorf("%d goroutines beyond the echo server's for %d sessions", extra, sessions)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, 5*time.Second, "every session to end", func() bool {
		return e.plane.opts.Stats.Config(1).Active.Load() == 0 && e.plane.active.Load() == 0
	})
	// Both sockets of every session are closed (the echo server's side closes as
	// its copy ends; a few pooled pipes may stay).
	waitFor(t, 5*time.Second, "the sessions' descriptors to close", func() bool { return countFDs(t) <= fds+8 })
}

// countFDs counts this process's open descriptors.
func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestTCPEngineCountsBytesPerNodeAndLogs: the engine adds to the node's, config's
// and NodeBalancer's byte counters and writes one access-log entry per session with
// its node and byte counts.
func TestTCPEngineCountsBytesPerNodeAndLogs(t *testing.T) {
	type entry struct {
		nodeID          int
		bytesIn, bytesO int64
	}
	logged := make(chan entry, 8)
	e := newEnv(t, "127.0.180.0/24", func(o *Options) {
		o.TCPAccessLog = func(_, _ int, en stats.TCPEntry) { logged <- entry{en.NodeID, en.BytesIn, en.BytesOut} }
	})
	echoServer(t, "127.0.181.2:9002", nil)
	nb := e.create(config(model.ProtocolTCP, 9000, node("echo", "127.0.181.2:9002", 50)))
	e.settle(1)
	<-logged // the readiness probe's
	if got := roundTrip(t, nb.IPv4+":9000", "hello"); got != "hello|echoed 5" {
		t.Fatalf("got %q", got)
	}
	var en entry
	select {
	case en = <-logged:
	case <-time.After(2 * time.Second):
		t.Fatal("no access-log entry")
	}
	if en.nodeID == 0 || en.bytesIn != 5 || en.bytesO != int64(len("hello|echoed 5")) {
		t.Errorf("access log: %+v", en)
	}
	nodeID := en.nodeID
	ns := e.plane.opts.Stats.Node(nodeID)
	if ns.BytesIn.Load() < 5 || ns.Connections.Load() < 2 || ns.Active.Load() != 0 {
		t.Errorf("node counters: in %d, connections %d, active %d", ns.BytesIn.Load(), ns.Connections.Load(), ns.Active.Load())
	}
}

// blackhole listens on addr with an accept queue of one, fills it and never
// accepts: further SYNs are dropped, so a connect to it hangs.
func blackhole(t *testing.T, addr string) {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return // the queue is full: this SYN was dropped
		}
		t.Cleanup(func() { c.Close() })
		if i > 8 {
			t.Skip("the kernel keeps taking connections into a full accept queue")
		}
	}
}

// TestTCPConnectTimeoutMovesToTheNextNode: a node that never answers the connect is
// given up after Timeouts.Connect, and the session goes to the next node.
func TestTCPConnectTimeoutMovesToTheNextNode(t *testing.T) {
	const connect = 300 * time.Millisecond
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			e := newEnv(t, "127.0.182.0/24", withEngine(eng), func(o *Options) { o.Timeouts.Connect = connect })
			echoServer(t, "127.0.183.2:9002", nil)
			blackhole(t, "127.0.183.3:9002")
			nb := e.create(config(model.ProtocolTCP, 9000, node("hole", "127.0.183.3:9002", 50), node("echo", "127.0.183.2:9002", 50)))
			slowest := time.Duration(0)
			for i := 0; i < 4; i++ {
				start := time.Now()
				if got := roundTrip(t, nb.IPv4+":9000", "ping"); got != "ping|echoed 4" {
					t.Fatalf("session %d: got %q", i, got)
				}
				slowest = max(slowest, time.Since(start))
			}
			if slowest < connect*9/10 {
				t.Fatalf("no session waited on the silent node (slowest %v): the test tests nothing", slowest)
			}
			if slowest > connect+time.Second {
				t.Errorf("a session took %v; the connect should be given up after %v", slowest, connect)
			}
		})
	}
}

// TestTCPEngineSocketsHaveNoDelay: both sockets of a session send small writes at
// once (TCP_NODELAY, as Go's net package sets): the client's inherited from the
// listening socket, the node's set at the connect.
func TestTCPEngineSocketsHaveNoDelay(t *testing.T) {
	e := newEnv(t, "127.0.184.0/24")
	echo := testnet.ServeConns(t, "127.0.185.2:0", func(c net.Conn) { io.Copy(c, c) })
	nb := e.create(config(model.ProtocolTCP, 9000, node("echo", echo.Addr().String(), 50)))
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	for name, peer := range map[string]*net.TCPAddr{"client": c.LocalAddr().(*net.TCPAddr), "node": echo.Addr().(*net.TCPAddr)} {
		fd := socketTo(t, peer)
		if v, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY); err != nil || v != 1 {
			t.Errorf("%s side: TCP_NODELAY = %d (%v), want 1", name, v, err)
		}
	}
}

// segsIn is how many segments the kernel has received on c's socket (TCP_INFO).
func segsIn(t *testing.T, c net.Conn) uint32 {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err != nil {
		t.Fatal(err)
	}
	return info.Segs_in
}

// corked sets TCP_CORK on c: what it writes leaves with the FIN of its Close or
// CloseWrite, in one segment.
func corked(c net.Conn) {
	rc, _ := c.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
}

// TestTCPEngineLastBytesCarryTheFIN: when the bytes a side reads come with the end
// of its stream, the engine sends them on with the end (one segment, data and FIN),
// as they came, in both directions: a request and a response of a session with
// Connection: close cost one packet and one wake-up of the reader less each. (The
// goroutine path writes, then shuts down: a segment more each way.)
func TestTCPEngineLastBytesCarryTheFIN(t *testing.T) {
	e := newEnv(t, "127.0.230.0/24")
	nodeSegs := make(chan uint32, 4)
	nodeLn := testnet.ServeConns(t, "127.0.231.2:0", func(c net.Conn) {
		b, _ := io.ReadAll(c) // the request and its end, from the engine
		nodeSegs <- segsIn(t, c)
		if len(b) == 0 {
			return // the readiness probe
		}
		// After the engine's ACK of the request has come: the answer then
		// its end, in one segment.
		time.Sleep(50 * time.Millisecond)
		corked(c)
		c.Write([]byte("answer"))
		c.Close()
	})
	nb := e.create(config(model.ProtocolTCP, 9000, node("n", nodeLn.Addr().String(), 50)))
	e.settle(1)
	<-nodeSegs
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	corked(c)
	c.Write([]byte("request"))
	c.(*net.TCPConn).CloseWrite() // the request and the FIN in one segment
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "answer" {
		t.Fatalf("read %q (%v), want the answer", b, err)
	}
	// Each socket got the other end's SYN-ACK or ACK of the handshake, an ACK
	// of what it sent, and the peer's bytes with the FIN.
	if got := segsIn(t, c); got != 3 {
		t.Errorf("the client got %d segments, want 3", got)
	}
	if got := <-nodeSegs; got != 3 {
		t.Errorf("the node got %d segments, want 3", got)
	}
}

// stallLoops keeps every loop of the engine busy for d: a client that connects and
// sends meanwhile has its bytes waiting when the loop accepts it.
func stallLoops(t *testing.T, e *env, d time.Duration) {
	t.Helper()
	e.plane.mu.Lock()
	eng := e.plane.engine
	e.plane.mu.Unlock()
	if eng == nil {
		t.Fatal("no tcp engine")
	}
	for _, lp := range eng.loops {
		lp.post(func() { time.Sleep(d) })
	}
}

// TestTCPBytesSentBeforeAFailedConnectGoToTheNextNode: a client whose bytes are
// waiting when it is accepted, while the connect to its first node fails (refused
// at once, or given up after Timeouts.Connect), has them reach the next node whole.
func TestTCPBytesSentBeforeAFailedConnectGoToTheNextNode(t *testing.T) {
	const connect = 300 * time.Millisecond
	for _, c := range []struct {
		name string
		bad  func(t *testing.T, addr string)
	}{
		{"refused", func(*testing.T, string) {}}, // nothing listens there
		{"silent", blackhole},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "127.0.232.0/24", func(o *Options) { o.Timeouts.Connect = connect })
			echoServer(t, "127.0.233.2:9002", nil)
			c.bad(t, "127.0.233.3:9002")
			nb := e.create(config(model.ProtocolTCP, 9000, node("bad", "127.0.233.3:9002", 50), node("echo", "127.0.233.2:9002", 50)))
			e.settle(1)
			msg := strings.Repeat("0123456789", 3000) // more than one segment
			want := fmt.Sprintf("%s|echoed %d", msg, len(msg))
			for i := 0; i < 4; i++ { // round robin: two of them try the bad node first
				stallLoops(t, e, 50*time.Millisecond)
				conn, err := net.Dial("tcp", nb.IPv4+":9000")
				if err != nil {
					t.Fatal(err)
				}
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(conn, msg)
				conn.(*net.TCPConn).CloseWrite()
				b, err := io.ReadAll(conn)
				conn.Close()
				if err != nil || string(b) != want {
					t.Fatalf("session %d: got %d bytes (%v), want %d", i, len(b), err, len(want))
				}
			}
			ns := e.plane.opts.Stats.Config(1)
			if got := ns.BytesIn.Load(); got < 4*uint64(len(msg)) {
				t.Errorf("%d bytes in counted, want at least %d", got, 4*len(msg))
			}
		})
	}
}

// TestTCPEngineProxyHeaderWrittenAtConnect: with a PROXY header to send, the first
// write right after connect both sends it and learns that the connect completed
// (writeFirst); the node gets the header, then every byte, and a refused node is
// still skipped for the next one.
func TestTCPEngineProxyHeaderWrittenAtConnect(t *testing.T) {
	e := newEnv(t, "127.0.234.0/24")
	headers := make(chan proxyproto.Header, 8)
	echoServer(t, "127.0.235.2:9002", headers)
	cfg := config(model.ProtocolTCP, 9000, node("gone", "127.0.235.3:9002", 50), node("echo", "127.0.235.2:9002", 50))
	cfg.Config.ProxyProtocol = model.ProxyProtocolV2
	nb := e.create(cfg)
	for i := 0; i < 4; i++ {
		if got := roundTrip(t, nb.IPv4+":9000", "ping"); got != "ping|echoed 4" {
			t.Fatalf("session %d: got %q", i, got)
		}
	}
	n := 0
	for len(headers) > 0 {
		h := <-headers
		if h.Dst.Addr().String() != nb.IPv4 || h.Dst.Port() != 9000 {
			t.Errorf("header names %v as the destination, want %s:9000", h.Dst, nb.IPv4)
		}
		n++
	}
	if n < 4 {
		t.Errorf("%d PROXY headers for 4 sessions (and the readiness probe)", n)
	}
}
