// Command backend is the small loopback HTTP backend that test/terraform/run.sh puts
// behind the NodeBalancer Terraform creates. Every answer names the backend and the
// client address it saw, so the script can tell which node served a request and
// whether a PROXY header carried the real client address.
//
// It is a test helper, run by hand through run.sh, never by `go test`.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/proxyproto"
)

func main() {
	listen := flag.String("listen", "", "loopback address to listen on (host:port)")
	name := flag.String("name", "", "name this backend puts in its answers")
	proxy := flag.Bool("proxy", false, "expect a PROXY header (v1 or v2) at the start of every connection")
	flag.Parse()
	if *listen == "" || *name == "" {
		fmt.Fprintln(os.Stderr, "usage: backend --listen 127.x.y.z:port --name NAME [--proxy]")
		os.Exit(2)
	}
	ap, err := netip.ParseAddrPort(*listen)
	if err != nil || !ap.Addr().IsLoopback() {
		// The project's network rule: test traffic stays on loopback.
		log.Fatalf("--listen %q: must be a loopback address and port", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		ln.Close()
	}()
	if *proxy {
		serveProxied(ln, *name)
		return
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "backend=%s client=%s path=%s\n", *name, hostOf(r.RemoteAddr), r.URL.Path)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
}

// serveProxied answers one HTTP request per connection after reading the PROXY
// header, reporting the client address the header carries. A connection that closes
// before sending anything (a `connection` health check) is simply closed.
func serveProxied(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			h, err := proxyproto.Read(br)
			if err != nil {
				return
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			client := "local"
			if !h.Local {
				client = h.Source.Addr().String()
			}
			body := fmt.Sprintf("backend=%s client=%s proxy=v%d path=%s\n", name, client, h.Version, req.URL.Path)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		}()
	}
}

func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
