package dataplane

// This file is on the per-request hot path of http and https configs: the Router the
// L7 engine asks for a node on every request. It reads the snapshot and atomics only.

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/httpproxy"
	"github.com/nodebalancer/nodebalancer/internal/model"
)

// router is an httpproxy.Router over one snapshot.
type router struct{ s *snapshot }

// Route implements httpproxy.Router: a valid sticky cookie first, then table
// stickiness and the balancing algorithm.
func (r *router) Route(client netip.Addr, cookie []byte, tried *httpproxy.Backend) *httpproxy.Backend {
	s := r.s
	var n *balance.Node
	if tried == nil && len(cookie) > 0 {
		if c := s.pool.ByToken(string(cookie)); c != nil && s.pool.Honour(c) {
			n = c
		}
	}
	if n == nil {
		var t *balance.Node
		if tried != nil {
			t = s.pool.Lookup(tried.Data().(*backend).id)
		}
		n = s.choose(client, balance.HashAddr(client), t)
	}
	if n == nil {
		return nil
	}
	be := n.Data.(*backend)
	n.State.Acquire()
	be.stats.Active.Add(1)
	return be.http
}

// Done implements httpproxy.Router.
func (r *router) Done(b *httpproxy.Backend, res httpproxy.Result) {
	be := b.Data().(*backend)
	be.health.State().Release()
	be.stats.Active.Add(-1)
	if res.Status != 0 {
		be.stats.Requests.Add(1)
		be.stats.Response(res.Status)
	}
	be.stats.BytesIn.Add(uint64(res.ReqBytes))
	be.stats.BytesOut.Add(uint64(res.RespBytes))
	if res.Failed() {
		be.passiveFailure()
	} else {
		be.passiveSuccess()
	}
}

// httpConfig is the L7 engine's configuration for snapshot s.
func (s *snapshot) httpConfig(log accessLogger) *httpproxy.Config {
	c := &httpproxy.Config{
		Router:         &router{s},
		Scheme:         string(s.cfg.Protocol),
		StickyCookie:   s.cfg.Stickiness == model.StickinessHTTPCookie,
		LogRequestLine: log != nil,
	}
	nb, cfg := s.nb, s.stats
	c.AccessLog = func(e httpproxy.AccessEntry) {
		nb.Requests.Add(1)
		cfg.Requests.Add(1)
		nb.Response(e.Status)
		cfg.Response(e.Status)
		nb.BytesIn.Add(uint64(e.ReqBytes))
		cfg.BytesIn.Add(uint64(e.ReqBytes))
		nb.BytesOut.Add(uint64(e.RespBytes))
		cfg.BytesOut.Add(uint64(e.RespBytes))
		if log != nil {
			log(s, e)
		}
	}
	return c
}

// accessLogger receives finished requests when access logging is on; it must not block.
type accessLogger func(s *snapshot, e httpproxy.AccessEntry)

// serveHTTP serves one http or https client connection accepted on local.
func (l *listener) serveHTTP(s *snapshot, c *net.TCPConn, local netip.AddrPort) {
	if s.cfg.Protocol != model.ProtocolHTTPS {
		l.http.ServeConn(l.ctx, c, local)
		return
	}
	l.serveHTTPS(s, c, local)
}

// serveHTTPS serves one https client connection. It is apart from serveHTTP so that
// its larger frame is not on the stack of every plain http connection.
func (l *listener) serveHTTPS(s *snapshot, c *net.TCPConn, local netip.AddrPort) {
	// TLS reads and writes its records with raw system calls (httpproxy.SysConn).
	tc := tls.Server(httpproxy.SysConn(c), s.tls)
	ctx, cancel := context.WithTimeout(l.ctx, l.plane.opts.Timeouts.TLSHandshake)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		l.h2.ServeConn(l.ctx, tc)
		return
	}
	l.http.ServeConn(l.ctx, tc, local)
}

// setSnapshot makes s the snapshot new connections and requests use.
func (l *listener) setSnapshot(s *snapshot) {
	if s.ended == nil {
		s.ended = func() { l.ended(s, 0) }
	}
	l.snap.Store(s)
	if s.cfg.Protocol == model.ProtocolTCP {
		return
	}
	hc := s.httpConfig(l.plane.accessLog)
	if l.http == nil {
		l.http = httpproxy.NewServer(hc, l.plane.log)
		l.http.SetParking(!l.plane.opts.NoHTTPPark)
		if s.cfg.Protocol == model.ProtocolHTTPS {
			l.h2 = l.http.NewHTTP2Server()
		}
		return
	}
	l.http.SetConfig(hc)
}
