//go:build linux

package httpproxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// fdPair returns an fdConn over the accepted side of a loopback TCP connection (its
// descriptor taken out of Go's poller, as ServeFD's are) and the client side, a plain
// net.Conn. Both are closed when the test ends.
func fdPair(t *testing.T) (*fdConn, *parkConn, *net.TCPConn) {
	t.Helper()
	sc, client := sysPair(t)
	fd := detachFD(sc)
	sc.Close()
	if fd < 0 {
		t.Fatal("cannot take the descriptor")
	}
	local := netip.MustParseAddrPort(sc.LocalAddr().String())
	pc := &parkConn{fd: int32(fd), slot: -1, local: &local}
	pc.setRemote(netip.MustParseAddrPort(client.LocalAddr().String()))
	cc := &clientConn{}
	fc := cc.bindFD(pc)
	pc.fc.Store(fc)
	t.Cleanup(func() {
		pc.fc.Store(nil)
		pc.mu.Lock()
		syscall.Close(int(pc.fd))
		pc.fd = -1
		pc.mu.Unlock()
		if pc.pi != 0 {
			pc.poller().unregister(pc)
		}
	})
	return fc, pc, client.(*net.TCPConn)
}

// result is what a Read or Write in another goroutine came to.
type result struct {
	n   int
	err error
	at  time.Duration
}

func readAsync(fc *fdConn, b []byte) <-chan result {
	ch := make(chan result, 1)
	start := time.Now()
	go func() {
		n, err := fc.Read(b)
		ch <- result{n, err, time.Since(start)}
	}()
	return ch
}

func waitResult(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the call is still blocked after 5s")
	}
	return result{}
}

// A read waits for bytes that arrive later (woken by the poller), then sees the end.
func TestFDConnReadWaitsThenEOF(t *testing.T) {
	fc, _, client := fdPair(t)
	buf := make([]byte, 64)
	ch := readAsync(fc, buf)
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("read returned %d, %v with nothing sent", r.n, r.err)
	default:
	}
	client.Write([]byte("hello"))
	r := waitResult(t, ch)
	if r.err != nil || string(buf[:r.n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:r.n], r.err)
	}
	ch = readAsync(fc, buf)
	time.Sleep(20 * time.Millisecond)
	client.Close()
	if r := waitResult(t, ch); r.n != 0 || r.err != io.EOF {
		t.Fatalf("after the client closed: %d, %v; want 0, EOF", r.n, r.err)
	}
}

// A read deadline ends a blocked read with a timeout at the deadline, and one set from
// another goroutine into the past (a graceful stop) ends it at once.
func TestFDConnReadDeadlineInterruptsWait(t *testing.T) {
	fc, _, _ := fdPair(t)
	buf := make([]byte, 64)
	fc.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	r := waitResult(t, readAsync(fc, buf))
	if !errors.Is(r.err, os.ErrDeadlineExceeded) || !isTimeout(r.err) {
		t.Fatalf("read ended with %v; want a timeout", r.err)
	}
	if r.at < 140*time.Millisecond || r.at > 2*time.Second {
		t.Fatalf("read timed out after %v; want about 150ms", r.at)
	}

	fc.SetReadDeadline(time.Time{})
	ch := readAsync(fc, buf)
	time.Sleep(50 * time.Millisecond)
	fc.SetReadDeadline(aLongTimeAgo)
	if r := waitResult(t, ch); !isTimeout(r.err) || r.at > 2*time.Second {
		t.Fatalf("read after a past deadline: %v after %v", r.err, r.at)
	}

	// Extending the deadline of a blocked read keeps it waiting.
	fc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	ch = readAsync(fc, buf)
	time.Sleep(20 * time.Millisecond)
	fc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	if r := waitResult(t, ch); !isTimeout(r.err) || r.at < 350*time.Millisecond {
		t.Fatalf("read with an extended deadline: %v after %v; want a timeout after 400ms", r.err, r.at)
	}
}

// Close (and the Server's interrupt) end a blocked read and a blocked write.
func TestFDConnCloseWhileWaiting(t *testing.T) {
	fc, _, _ := fdPair(t)
	ch := readAsync(fc, make([]byte, 64))
	time.Sleep(50 * time.Millisecond)
	fc.Close()
	if r := waitResult(t, ch); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("read after Close: %v; want net.ErrClosed", r.err)
	}

	fc, pc, _ := fdPair(t)
	pc.cc = &clientConn{fdc: fc}
	wch := make(chan result, 1)
	go func() {
		n, err := fc.Write(make([]byte, 64<<20)) // far more than the socket holds
		wch <- result{n: n, err: err}
	}()
	time.Sleep(100 * time.Millisecond)
	pc.interrupt()
	if r := waitResult(t, wch); r.err == nil || r.n >= 64<<20 {
		t.Fatalf("write after interrupt: %d, %v; want it to fail", r.n, r.err)
	}
	if _, err := fc.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after interrupt succeeded")
	}
}

// A write to a client that reads slowly is written whole, through partial writes and
// waits for room (EPOLLOUT, added to the registration when first needed).
func TestFDConnPartialWritesToSlowReader(t *testing.T) {
	fc, pc, client := fdPair(t)
	// A small send buffer, so that the write fills it many times over. (Not a tiny
	// receive buffer: below the loopback MSS, the window stalls on its own.)
	syscall.SetsockoptInt(fc.fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10)
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := sha256.Sum256(data)
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 8<<10)
		for {
			time.Sleep(time.Millisecond)
			n, err := client.Read(buf)
			h.Write(buf[:n])
			if err != nil {
				break
			}
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		got <- s
	}()
	fc.SetWriteDeadline(time.Now().Add(20 * time.Second))
	n, err := fc.Write(data)
	if err != nil || n != len(data) {
		t.Fatalf("wrote %d, %v; want %d", n, err, len(data))
	}
	if !pc.pollOut {
		t.Error("the write never waited for room: the test did not test that")
	}
	fc.CloseWrite()
	select {
	case s := <-got:
		if !bytes.Equal(s[:], want[:]) {
			t.Fatal("the client received other bytes than were written")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client did not receive everything")
	}
}

// A write deadline ends a write blocked on a client that does not read, saying how
// much was written.
func TestFDConnWriteDeadlineInterruptsWait(t *testing.T) {
	fc, _, _ := fdPair(t)
	// A second, so that the write has begun before it passes even on a loaded machine
	// (with 200ms it once timed out before writing anything).
	deadline := time.Now().Add(time.Second)
	fc.SetWriteDeadline(deadline)
	n, err := fc.Write(make([]byte, 64<<20))
	end := time.Now()
	if !isTimeout(err) {
		t.Fatalf("write ended with %v; want a timeout", err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("wrote %d bytes; want some, not all", n)
	}
	if late := end.Sub(deadline); late < -10*time.Millisecond || late > 3*time.Second {
		t.Fatalf("write timed out %v after its deadline; want soon after it", late)
	}
	// Past its deadline, a write fails before it starts.
	if n, err := fc.Write([]byte("x")); n != 0 || !isTimeout(err) {
		t.Fatalf("write past the deadline: %d, %v", n, err)
	}
}

// The RawConn's Read calls its function again each time the socket becomes readable,
// and gives up at the deadline.
func TestFDConnRawRead(t *testing.T) {
	fc, _, client := fdPair(t)
	rc, _ := fc.SyscallConn()
	var got []byte
	calls := 0
	go func() {
		for _, s := range []string{"ab", "cd"} {
			time.Sleep(30 * time.Millisecond)
			client.Write([]byte(s))
		}
	}()
	err := rc.Read(func(fd uintptr) bool {
		calls++
		b := make([]byte, 8)
		n, _ := syscall.Read(int(fd), b)
		if n > 0 {
			got = append(got, b[:n]...)
		}
		return len(got) >= 4
	})
	if err != nil || string(got) != "abcd" {
		t.Fatalf("raw read: %q, %v", got, err)
	}
	if calls < 2 {
		t.Fatalf("%d calls; the function should have waited between the two writes", calls)
	}
	fc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := rc.Read(func(uintptr) bool { return false }); !isTimeout(err) {
		t.Fatalf("raw read past the deadline: %v", err)
	}
}
