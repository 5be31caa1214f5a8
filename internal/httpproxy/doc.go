// Package httpproxy is nodebalancer's L7 engine: it proxies HTTP/1.x client
// connections to backends over pooled keep-alive connections, parsing strictly enough
// that no request can be read two ways (request smuggling).
//
// The data plane owns listeners and TLS. It creates one Backend per node (kept while
// the node's address is unchanged, so the idle pool survives config changes), one
// Server per listener, installs a Config with a Router it implements, and hands each
// accepted connection to ServeConn:
//
//	srv := httpproxy.NewServer(&httpproxy.Config{Router: r, Scheme: "http"}, logger)
//	go srv.ServeConn(ctx, conn, listenerAddr) // per connection; cancel ctx to stop gracefully
//	go srv.ServeConnAsync(ctx, conn, listenerAddr, done) // or: idle keep-alive connections park (park.go)
//	srv.SetConfig(next)                        // on reconcile; requests in flight keep theirs
//
// For HTTPS, connections that negotiated ALPN "h2" go to an HTTP2Server from
// Server.NewHTTP2Server (net/http's HTTP/2 server with httputil.ReverseProxy through the
// same Router and Backends); the others, HTTP/1.1 over TLS, to ServeConn.
//
// The HTTP/1.1 path is built for speed: one goroutine per client connection, buffers
// owned by the connection and recycled, heads parsed in place, the backend head and a
// small body sent in one write, and no allocation per request in steady state. On plain
// TCP no read comes back empty (EAGAIN): a client's keep-alive loop runs inside one
// poller registration (serveRaw) and a request is sent and its answer awaited in
// another (rawSend). An idle keep-alive connection holds no buffer; served through
// ServeConnAsync it holds no goroutine either: it waits in an epoll set and a bounded
// pool of workers serves it when bytes arrive. The hot path lives
// in serve.go, conn.go, rawloop.go, exchange.go, body.go, forward.go, parse.go,
// chunked.go and reader.go.
//
// Behaviour in brief: requests are refused with 400 (431 for heads over
// MaxHeaderBytes, 505 for other HTTP versions, 501 for CONNECT) and the connection
// closed when their framing is ambiguous or malformed: Content-Length together with
// Transfer-Encoding, repeated or malformed Content-Length, a Transfer-Encoding other
// than exactly "chunked", bad chunk framing, obsolete line folding, bare CR or LF,
// control characters, non-ASCII targets. Backend responses get the same scrutiny (502).
// X-Forwarded-For and Forwarded are appended to, X-Forwarded-Proto and X-Real-IP
// replaced; hop-by-hop fields are dropped both ways and body framing is re-stated. An
// absolute-form target ("GET http://h/x") is forwarded in origin form with Host set to
// its authority (RFC 9112 section 3.2.2: the Host received is ignored). A
// connect failure is retried on the backend Route picks next. A request that meets a
// pooled connection closing under it, before anything of the response was seen, is
// sent once more on a new connection only when none of it was written or it may run
// twice (GET, HEAD, OPTIONS, TRACE, or an Idempotency-Key field, as in net/http);
// otherwise it gets 502. Before any other request goes out on a pooled connection, a
// non-blocking read checks that the backend has not closed it while it was idle. Upgrades (WebSocket) become a byte tunnel after a 101.
package httpproxy
