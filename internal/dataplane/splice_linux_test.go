package dataplane

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T, ln *net.TCPListener) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

type counter struct{ atomic.Uint64 }

func TestSpliceCopyMovesEveryByteAndCounts(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 83, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, size := range []int{0, 1, 200, 70 << 10, 9 << 20} {
		writer, src := tcpPair(t, ln)
		dst, reader := tcpPair(t, ln)
		data := make([]byte, size)
		rand.Read(data)
		var c1, c2 counter
		type result struct {
			n   int64
			err error
		}
		done := make(chan result, 1)
		go func() {
			n, err := spliceCopy(dst, src, nil, &c1, &c2)
			dst.CloseWrite()
			done <- result{n, err}
		}()
		go func() {
			writer.Write(data)
			writer.CloseWrite()
		}()
		reader.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(reader)
		if err != nil {
			t.Fatalf("size %d: read: %v", size, err)
		}
		r := <-done
		if r.err != nil || r.n != int64(size) || !bytes.Equal(got, data) {
			t.Fatalf("size %d: copied %d, err %v, received %d bytes (equal %v)", size, r.n, r.err, len(got), bytes.Equal(got, data))
		}
		if c1.Load() != uint64(size) || c2.Load() != uint64(size) {
			t.Fatalf("size %d: counters %d and %d", size, c1.Load(), c2.Load())
		}
	}
}

func TestSpliceCopyReportsAResetDestination(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 83, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	writer, src := tcpPair(t, ln)
	dst, reader := tcpPair(t, ln)
	reader.SetLinger(0)
	reader.Close() // reset: writes to dst fail
	done := make(chan error, 1)
	go func() {
		_, err := spliceCopy(dst, src, nil)
		done <- err
	}()
	chunk := make([]byte, 64<<10)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("copy into a reset connection ended without an error")
			}
			return
		default:
		}
		writer.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		writer.Write(chunk)
	}
	t.Fatal("copy into a reset connection did not end")
}

// Idle sessions must not hold pipes: 5,000 idle tcp sessions would otherwise need
// 20,000 descriptors for pipes alone.
func TestSpliceCopyHoldsNoPipeWhileIdle(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 83, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	before := countPipes(t)
	const sessions = 40
	done := make(chan error, sessions)
	var srcs []*net.TCPConn
	for i := 0; i < sessions; i++ {
		_, src := tcpPair(t, ln)
		dst, _ := tcpPair(t, ln)
		srcs = append(srcs, src)
		go func() {
			_, err := spliceCopy(dst, src, nil)
			done <- err
		}()
	}
	time.Sleep(200 * time.Millisecond) // every copy is waiting for data
	// Pipes the pool dropped (the race detector makes it drop some on purpose) are
	// closed by their cleanups after a collection.
	for i := 0; i < 3; i++ {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if held := countPipes(t) - before; held > 4 {
		t.Errorf("%d idle copies hold %d pipe descriptors", sessions, held)
	}
	for _, s := range srcs {
		s.Close()
	}
	for i := 0; i < sessions; i++ {
		<-done
	}
}

func countPipes(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}
