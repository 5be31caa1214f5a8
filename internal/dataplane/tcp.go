package dataplane

// This file is on the per-connection hot path of tcp configs. It reads the listener's
// immutable snapshot and atomics only; the bytes move in the kernel (spliceCopy).

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/proxyproto"
	"github.com/nodebalancer/nodebalancer/internal/stats"
)

// chunk is how many bytes spliceCopy moves before the byte counters are updated, so
// long-lived sessions show up in live graphs.
const chunk = 4 << 20

// serveTCP proxies one client connection, accepted on local, to a node of snapshot s.
func (l *listener) serveTCP(s *snapshot, client *net.TCPConn, src, local netip.AddrPort) {
	var start time.Time
	logf := l.plane.opts.TCPAccessLog
	if logf != nil {
		start = time.Now()
	}
	key := balance.HashAddr(src.Addr())
	var tried *balance.Node
	var upstream *net.TCPConn
	var n *balance.Node
	for attempt := 0; attempt < maxAttempts; attempt++ {
		n = s.choose(src.Addr(), key, tried)
		if n == nil {
			break
		}
		be := n.Data.(*backend)
		c, err := l.plane.dial(be.addr)
		if err == nil {
			upstream = c
			be.passiveSuccess()
			break
		}
		be.passiveFailure()
		tried = n
	}
	if upstream == nil {
		s.refuse(client, false)
		if logf != nil {
			logf(s.nbID, s.cfg.ID, stats.TCPEntry{Start: start, Duration: time.Since(start), Client: src, Local: local})
		}
		return
	}
	be := n.Data.(*backend)
	defer keepAliveLater(upstream, keepAliveAfter).Stop()
	// The node's side too is closed when a stop's grace is over (conns.closeAll):
	// once the client has finished sending, the session waits on the node only.
	id := l.conns.add(upstream)
	defer l.conns.remove(id)
	n.State.Acquire()
	be.stats.Active.Add(1)
	be.stats.Connections.Add(1)
	defer func() {
		be.stats.Active.Add(-1)
		n.State.Release()
	}()

	if s.cfg.ProxyProtocol != model.ProxyProtocolNone {
		var hdr [64]byte
		var h []byte
		dst := local
		if s.cfg.ProxyProtocol == model.ProxyProtocolV1 {
			h = proxyproto.AppendV1(hdr[:0], src, dst)
		} else {
			h = proxyproto.AppendV2(hdr[:0], src, dst)
		}
		if _, err := upstream.Write(h); err != nil {
			upstream.Close()
			client.Close()
			return
		}
	}

	var act *activity
	if d := l.plane.opts.Timeouts.TCPIdle; d > 0 {
		w := watchIdle(d, client, upstream)
		defer w.stop()
		act = &w.activity
	}
	done := make(chan copied, 1)
	// Set when the node has ended its side: the node's socket is then closed right
	// after the client's side ends, without a shutdown first (one system call less per
	// session in the usual order: the node closes, then the client).
	var nodeDone atomic.Bool
	go func() {
		n, err := spliceCopy(upstream, client, act, &be.stats.BytesIn, &s.nb.BytesIn, &s.stats.BytesIn)
		if err == nil {
			if !nodeDone.Load() {
				upstream.CloseWrite()
			}
		} else { // a reset or a forced close: end the other direction too
			client.Close()
			upstream.Close()
		}
		done <- copied{n, err}
	}()
	out, err := spliceCopy(client, upstream, act, &be.stats.BytesOut, &s.nb.BytesOut, &s.stats.BytesOut)
	var in copied
	waited := false
	if err == nil {
		nodeDone.Store(true)
		client.CloseWrite()
		// The client has its whole answer; the other direction gets a bounded time to
		// end (HAProxy's "timeout client-fin").
		select {
		case in = <-done:
			waited = true
		case <-time.After(l.plane.opts.Timeouts.HalfClose):
		}
	}
	client.Close()
	upstream.Close()
	if !waited {
		in = <-done // both sockets are closed: the other copy ends at once
	}
	if logf != nil {
		logf(s.nbID, s.cfg.ID, stats.TCPEntry{Start: start, Duration: time.Since(start), Client: src, Local: local,
			Node: be.addr, NodeID: n.ID, BytesIn: in.n, BytesOut: out})
	}
}

// copied is what the client-to-node copy reports: bytes and how it ended.
type copied struct {
	n   int64
	err error
}

// keepAliveAfter is the session age at which the connection to the node gets TCP
// keep-alive (the client's has it from the listener). Setting it at the connect would
// cost every session four system calls (1.8-3.6 µs here: BenchmarkKeepAliveOptions);
// most sessions end sooner, and for them a timer started and stopped costs a fraction
// of that. Nothing is lost by waiting: the kernel counts the keep-alive idle time from
// the last segment received, not from when the option was set, so as long as this is
// below keepIdle (60 s) a node that went silent at any moment is still found dead
// 120 s after its last segment.
var keepAliveAfter = 30 * time.Second // a variable only for tests

// keepAliveLater turns keep-alive on for c after d, unless the returned timer is
// stopped first.
func keepAliveLater(c *net.TCPConn, d time.Duration) *time.Timer {
	return time.AfterFunc(d, func() { setConnKeepAlive(c) })
}

// maxAttempts bounds how many nodes a failed connect is retried on.
const maxAttempts = 3

// adder is the one method of an atomic counter spliceCopy needs.
type adder interface{ Add(uint64) uint64 }
