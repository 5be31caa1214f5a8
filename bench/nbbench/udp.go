package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// udpEcho runs a UDP echo server on each address given until killed.
//
//	nbbench udpecho ADDR...
func udpEcho(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: udpecho ADDR [ADDR]")
	}
	errc := make(chan error, len(args))
	for _, a := range args {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
		go func() {
			buf := make([]byte, 1<<16)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					errc <- err
					return
				}
				c.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
	}
	return <-errc
}

// udpLoad is a closed-loop request/response load: c clients, each with its own
// socket (so its own session), send a datagram and wait for the reply, for d. A reply
// must come from the address sent to (the socket is connected). It prints
// "datagrams/s p99_ms lost sent" where lost counts requests without a reply within
// 200 ms.
//
//	nbbench udpload -addr A [-c 64] [-d 5s] [-size 64]
func udpLoad(args []string) error {
	fs := flag.NewFlagSet("udpload", flag.ContinueOnError)
	addr := fs.String("addr", "", "address to send to")
	clients := fs.Int("c", 64, "clients (sessions)")
	dur := fs.Duration("d", 5*time.Second, "duration")
	size := fs.Int("size", 64, "datagram size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	to, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return err
	}
	// Latency histogram in µs buckets up to 100 ms, shared by atomics.
	const buckets = 100000
	hist := make([]atomic.Uint64, buckets+1)
	var done, lost atomic.Uint64
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range *clients {
		c, err := net.DialUDP("udp", nil, to)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			msg := make([]byte, *size)
			buf := make([]byte, 1<<16)
			for time.Now().Before(stop) {
				t0 := time.Now()
				if _, err := c.Write(msg); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				c.SetReadDeadline(t0.Add(200 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					lost.Add(1)
					continue
				}
				us := time.Since(t0).Microseconds()
				hist[min(us, buckets)].Add(1)
				done.Add(1)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	if p := firstErr.Load(); p != nil {
		return *p
	}
	n := done.Load()
	if n == 0 {
		return fmt.Errorf("no replies from %s (%d lost)", *addr, lost.Load())
	}
	want := uint64(float64(n) * 0.99)
	var acc uint64
	p99 := 0
	for i := range hist {
		acc += hist[i].Load()
		if acc >= want {
			p99 = i
			break
		}
	}
	fmt.Printf("%.0f %.3f %d %d\n", float64(n)/elapsed.Seconds(), float64(p99)/1000, lost.Load(), n+lost.Load())
	return nil
}

// udpIdle holds n sessions through the balancer at addr (one socket each, one
// request/reply to open it, a second round to keep it alive past the first ones'
// age) and prints "sessions KiB B/session": the RSS growth of the given pids.
//
//	nbbench udpidle -addr A -n N -pids P,Q
func udpIdle(args []string) error {
	fs := flag.NewFlagSet("udpidle", flag.ContinueOnError)
	addr := fs.String("addr", "", "address")
	n := fs.Int("n", 5000, "sessions")
	pids := fs.String("pids", "", "comma-separated pids whose RSS (with children) is measured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var roots []int
	for _, p := range strings.Split(*pids, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
			roots = append(roots, v)
		}
	}
	if len(roots) == 0 {
		return errors.New("-pids is required")
	}
	to, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return err
	}
	before := rssKiB(roots)
	conns := make([]*net.UDPConn, *n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	ask := func(c *net.UDPConn) error {
		var buf [64]byte
		for try := 0; try < 5; try++ {
			if _, err := c.Write(buf[:16]); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := c.Read(buf[:]); err == nil {
				return nil
			}
		}
		return errors.New("no reply after 5 tries")
	}
	round := func(open bool) error {
		sem := make(chan struct{}, 128)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for i := range conns {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				var err error
				if open {
					conns[i], err = net.DialUDP("udp", nil, to)
				}
				if err == nil {
					err = ask(conns[i])
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return first
	}
	t0 := time.Now()
	if err := round(true); err != nil {
		return fmt.Errorf("opening sessions: %w", err)
	}
	opened := time.Since(t0)
	if err := round(false); err != nil {
		return fmt.Errorf("refreshing sessions: %w", err)
	}
	if total := time.Since(t0); total > 1800*time.Millisecond {
		return fmt.Errorf("opening and refreshing %d sessions took %v (opening %v): longer than a 2 s session timeout", *n, total, opened)
	}
	after := rssKiB(roots)
	growth := after - before
	fmt.Printf("%d %d %.0f\n", *n, growth, float64(growth)*1024/float64(*n))
	return nil
}
