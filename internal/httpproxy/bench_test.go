package httpproxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
)

const benchRequest = "GET /index.html?user=42 HTTP/1.1\r\n" +
	"Host: www.example.test\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef; NB_SRVID=node-1; theme=dark\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"\r\n"

func BenchmarkParseRequest(b *testing.B) {
	in := []byte(benchRequest)
	var req request
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		end, err := findHeadEnd(in)
		if err != nil || end != len(in) {
			b.Fatal("no head end")
		}
		if err := parseRequest(in[:end], &req, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildRequestHead(b *testing.B) {
	in := []byte(benchRequest)
	var req request
	if err := parseRequest(in, &req, true); err != nil {
		b.Fatal(err)
	}
	client := netip.MustParseAddr("192.0.2.1")
	local := netip.MustParseAddrPort("192.0.2.2:80")
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		out = appendRequestHead(out[:0], &req, client, local, "http", false)
	}
}

// minimalBackend answers every GET head it reads with a fixed response, like an nginx
// "return 200". It allocates nothing per request.
func minimalBackend(tb testing.TB, ip string) (netip.AddrPort, func()) {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		tb.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello from a\n")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					k, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += k
					for {
						i := bytes.Index(buf[:n], crlfcrlf)
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// singleRouter always routes to one backend and ignores results.
type singleRouter struct{ b *Backend }

func (r singleRouter) Route(netip.Addr, []byte, *Backend) *Backend { return r.b }
func (r singleRouter) Done(*Backend, Result)                       {}

// BenchmarkProxyKeepAlive measures one keep-alive request through the whole proxy:
// client conn -> ServeConn -> pooled backend conn -> minimal backend, over loopback TCP.
func BenchmarkProxyKeepAlive(b *testing.B) {
	benchmarkKeepAlive(b, &Config{StickyCookie: true})
}

// BenchmarkProxyKeepAliveCounted adds an AccessLog hook that only counts, as the data
// plane's statistics do: still no allocation per request.
func BenchmarkProxyKeepAliveCounted(b *testing.B) {
	var requests, bytes int64
	benchmarkKeepAlive(b, &Config{StickyCookie: true, AccessLog: func(e AccessEntry) {
		requests++
		bytes += e.RespBytes
	}})
	if requests == 0 || bytes == 0 {
		b.Fatal("the AccessLog hook saw nothing")
	}
}

// BenchmarkProxyKeepAlivePOST is BenchmarkProxyKeepAlive with a POST, which may not be
// resent: each one first checks that its pooled backend connection is still open (one
// non-blocking read).
func BenchmarkProxyKeepAlivePOST(b *testing.B) {
	benchmarkKeepAliveWith(b, &Config{StickyCookie: true}, "POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n")
}

func benchmarkKeepAlive(b *testing.B, cfg *Config) { benchmarkKeepAliveWith(b, cfg, benchRequest) }

// BenchmarkProxyKeepAliveParked is BenchmarkProxyKeepAlive through ServeConnAsync: the
// connection parks after each response and a new goroutine serves each request.
func BenchmarkProxyKeepAliveParked(b *testing.B) {
	benchmarkKeepAliveServe(b, &Config{}, benchRequest, true)
}

func benchmarkKeepAliveWith(b *testing.B, cfg *Config, request string) {
	benchmarkKeepAliveServe(b, cfg, request, false)
}

func benchmarkKeepAliveServe(b *testing.B, cfg *Config, request string, async bool) {
	addr, stop := minimalBackend(b, "127.0.0.2")
	defer stop()
	be := NewBackend(addr, BackendOptions{})
	defer be.Close()
	cfg.Router = singleRouter{be}
	srv := NewServer(cfg, nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	local := netip.MustParseAddrPort(ln.Addr().String())
	if async {
		go srv.ServeConnAsync(ctx, server, local, func() { close(done) })
	} else {
		go func() {
			srv.ServeConn(ctx, server, local)
			close(done)
		}()
	}

	req := []byte(request)
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := client.Write(req); err != nil {
			b.Fatal(err)
		}
		// Read until the whole response (head + 13-byte body) is in.
		n := 0
		for {
			k, err := client.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += k
			if i := bytes.Index(buf[:n], crlfcrlf); i >= 0 && n >= i+4+13 {
				return
			}
		}
	}
	roundTrip() // warm up: dial the backend, fill the pools
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
	b.StopTimer()
	client.Close()
	<-done
}

// BenchmarkProxyParallel runs several keep-alive clients at once, closer to a load test.
func BenchmarkProxyParallel(b *testing.B) { benchmarkParallel(b, false) }

// BenchmarkProxyParallelParked is BenchmarkProxyParallel through ServeConnAsync.
func BenchmarkProxyParallelParked(b *testing.B) { benchmarkParallel(b, true) }

func benchmarkParallel(b *testing.B, async bool) {
	addr, stop := minimalBackend(b, "127.0.0.2")
	defer stop()
	be := NewBackend(addr, BackendOptions{})
	defer be.Close()
	srv := NewServer(&Config{Router: singleRouter{be}}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			if async {
				go srv.ServeConnAsync(ctx, c, netip.AddrPort{}, wg.Done)
			} else {
				go func() { defer wg.Done(); srv.ServeConn(ctx, c, netip.AddrPort{}) }()
			}
		}
	}()
	req := []byte(benchRequest)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			n := 0
			for {
				k, err := c.Read(buf[n:])
				if err != nil {
					if err != io.EOF {
						b.Error(err)
					}
					return
				}
				n += k
				if i := bytes.Index(buf[:n], crlfcrlf); i >= 0 && n >= i+4+13 {
					break
				}
			}
		}
	})
	b.StopTimer()
	ln.Close()
	cancel()
	wg.Wait()
}
