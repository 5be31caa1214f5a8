package httpproxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

// sysPair returns the two ends of a loopback TCP connection: the accepted one (as a
// *net.TCPConn) and the dialled one.
func sysPair(t *testing.T) (*net.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); d.Close() })
	return a.(*net.TCPConn), d
}

// A sysConn moves more than the socket buffers hold both ways (so its reads and writes
// wait in Go's poller between raw calls) and loses no byte.
func TestSysConnMovesBytes(t *testing.T) {
	a, d := sysPair(t)
	sc := SysConn(a)
	if _, ok := sc.(*sysConn); !ok {
		t.Fatalf("SysConn returned %T", sc)
	}
	const size = 8 << 20
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i * 7)
	}
	errc := make(chan error, 2)
	go func() { // the peer: echo everything back, starting late so the writes back up
		time.Sleep(50 * time.Millisecond)
		_, err := io.CopyN(d, d, size)
		errc <- err
	}()
	go func() {
		n, err := sc.Write(want)
		if err == nil && n != size {
			err = errors.New("short write")
		}
		errc <- err
	}()
	got := make([]byte, 0, size)
	buf := make([]byte, 64<<10)
	for len(got) < size {
		n, err := sc.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes read back differ from those written")
	}
	if n, err := sc.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}

// Reads honour the read deadline as net.Conn's do, and end with io.EOF when the peer
// closes; a write to a connection the peer reset fails as the peer's close.
func TestSysConnDeadlineEOFAndReset(t *testing.T) {
	a, d := sysPair(t)
	sc := SysConn(a)
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	n, err := sc.Read(make([]byte, 10))
	if n != 0 || !isTimeout(err) {
		t.Fatalf("read past the deadline: %d, %v (want a timeout)", n, err)
	}
	if el := time.Since(start); el < 40*time.Millisecond || el > 5*time.Second {
		t.Fatalf("the timeout came after %v", el)
	}
	sc.SetReadDeadline(time.Time{})
	d.Write([]byte("bye"))
	d.Close()
	b := make([]byte, 10)
	if n, err := sc.Read(b); n != 3 || err != nil || string(b[:3]) != "bye" {
		t.Fatalf("read: %d %q, %v", n, b[:n], err)
	}
	if n, err := sc.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v (want io.EOF)", n, err)
	}

	a2, d2 := sysPair(t)
	d2.(*net.TCPConn).SetLinger(0)
	d2.Close() // a reset
	sc2 := SysConn(a2)
	var werr error
	for range 100 {
		if _, werr = sc2.Write(make([]byte, 4096)); werr != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !isClosedByPeer(werr) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("write to a reset connection: %v", werr)
	}
	a2.Close()
	if _, err := sc2.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write to a closed connection: %v (want net.ErrClosed)", err)
	}
}

// TLS runs over a sysConn: the handshake and records both ways.
func TestSysConnTLS(t *testing.T) {
	a, d := sysPair(t)
	cert := testcert.New(t, "sys.test")
	srv := tls.Server(SysConn(a), &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
	cli := tls.Client(d, &tls.Config{RootCAs: cert.Pool, ServerName: "sys.test"})
	errc := make(chan error, 1)
	go func() {
		b := make([]byte, 5)
		if _, err := io.ReadFull(srv, b); err != nil {
			errc <- err
			return
		}
		_, err := srv.Write(bytes.Repeat(b, 100000))
		errc <- err
	}()
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 500000)
	if _, err := io.ReadFull(cli, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte("hello"), 100000)) {
		t.Fatal("wrong bytes through TLS")
	}
}

// A write to a peer that reads nothing ends at the write deadline, as net.Conn's does,
// with what was written counted.
func TestSysConnWriteDeadline(t *testing.T) {
	a, _ := sysPair(t)
	sc := SysConn(a)
	// Long enough that a loaded machine (CI, -race) reaches the Write well before it:
	// the socket buffers fill in microseconds, then the write waits for the deadline.
	sc.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := sc.Write(make([]byte, 256<<20))
	if !isTimeout(err) {
		t.Fatalf("write past the deadline: %d, %v (want a timeout)", n, err)
	}
	if n <= 0 || n >= 256<<20 {
		t.Fatalf("written before the timeout: %d", n)
	}
}
