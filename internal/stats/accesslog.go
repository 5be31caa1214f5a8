package stats

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/httpproxy"
)

// TCPEntry describes one finished tcp client connection for the access log.
type TCPEntry struct {
	Start    time.Time
	Duration time.Duration
	Client   netip.AddrPort // the client's address
	Local    netip.AddrPort // the config's ipv4:port
	Node     netip.AddrPort // the node's address; zero when none could be reached
	NodeID   int            // 0 when none could be reached
	BytesIn  int64          // bytes from the client
	BytesOut int64          // bytes to the client
}

// UDPEntry describes one ended udp session for the access log.
type UDPEntry struct {
	Start        time.Time
	Duration     time.Duration
	Client       netip.AddrPort // the client's address and port: the session's key
	Local        netip.AddrPort // the config's ipv4:port
	Node         netip.AddrPort
	NodeID       int
	BytesIn      int64  // bytes from the client
	BytesOut     int64  // bytes to the client
	DatagramsIn  int64  // datagrams from the client
	DatagramsOut int64  // datagrams to the client
	End          string // why it ended: idle, node_down, unreachable, closed
}

// DefaultAccessLogQueue is how many entries may wait for the writer before new ones
// are dropped.
const DefaultAccessLogQueue = 8192

// accessRecord is one queued entry of either protocol.
type accessRecord struct {
	tcp               bool
	udp               bool
	dIn, dOut         int64
	end               string
	nbID, configID    int
	nodeID            int
	start             time.Time
	dur               time.Duration
	client, local     netip.AddrPort
	node              netip.AddrPort
	method, target    string
	status            int
	bytesIn, bytesOut int64
	failure           httpproxy.Failure
	dropRule          string // the firewall rule that dropped the connection
}

// AccessLog writes one JSON line (log/slog) per http request and per tcp connection.
// The data plane's hooks (HTTP, TCP) only queue the entry on a bounded channel; one
// writer goroutine (Run) formats and writes. When the queue is full the entry is
// dropped and counted, so a slow disk never stalls the proxy.
type AccessLog struct {
	ch      chan accessRecord
	w       *bufio.Writer
	h       slog.Handler
	dropped atomic.Uint64
}

// NewAccessLog returns an AccessLog writing to w with a queue of queue entries
// (DefaultAccessLogQueue when queue ≤ 0).
func NewAccessLog(w io.Writer, queue int) *AccessLog {
	if queue <= 0 {
		queue = DefaultAccessLogQueue
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	return &AccessLog{ch: make(chan accessRecord, queue), w: bw, h: slog.NewJSONHandler(bw, nil)}
}

// Dropped returns how many entries were dropped because the queue was full.
func (a *AccessLog) Dropped() uint64 { return a.dropped.Load() }

func (a *AccessLog) enqueue(r accessRecord) {
	select {
	case a.ch <- r:
	default:
		a.dropped.Add(1)
	}
}

// HTTP queues a finished http or https request; it never blocks. Its signature is
// dataplane.Options.AccessLog's.
func (a *AccessLog) HTTP(nodeBalancerID, configID int, e httpproxy.AccessEntry) {
	r := accessRecord{
		nbID: nodeBalancerID, configID: configID, start: e.Start, dur: e.Duration,
		client: e.Client, local: e.Local, method: e.Method, target: e.Target, status: e.Status,
		bytesIn: e.ReqBytes, bytesOut: e.RespBytes, failure: e.Failure,
	}
	if e.Backend != nil {
		r.node = e.Backend.Addr()
	}
	a.enqueue(r)
}

// TCP queues a finished tcp connection; it never blocks. Its signature is
// dataplane.Options.TCPAccessLog's.
func (a *AccessLog) TCP(nodeBalancerID, configID int, e TCPEntry) {
	a.enqueue(accessRecord{
		tcp: true, nbID: nodeBalancerID, configID: configID, nodeID: e.NodeID, start: e.Start, dur: e.Duration,
		client: e.Client, local: e.Local, node: e.Node, bytesIn: e.BytesIn, bytesOut: e.BytesOut,
	})
}

// UDP queues an ended udp session; it never blocks. Its signature is
// dataplane.Options.UDPAccessLog's.
func (a *AccessLog) UDP(nodeBalancerID, configID int, e UDPEntry) {
	a.enqueue(accessRecord{
		udp: true, nbID: nodeBalancerID, configID: configID, nodeID: e.NodeID, start: e.Start, dur: e.Duration,
		client: e.Client, local: e.Local, node: e.Node, bytesIn: e.BytesIn, bytesOut: e.BytesOut,
		dIn: e.DatagramsIn, dOut: e.DatagramsOut, end: e.End,
	})
}

// Run writes queued entries until ctx ends, then writes what is still queued and
// returns. The writer is flushed whenever the queue runs empty.
func (a *AccessLog) Run(ctx context.Context) error {
	for {
		select {
		case r := <-a.ch:
			a.write(r)
			if len(a.ch) == 0 {
				a.w.Flush()
			}
		case <-ctx.Done():
			for {
				select {
				case r := <-a.ch:
					a.write(r)
				default:
					return a.w.Flush()
				}
			}
		}
	}
}

var failures = [...]string{"", "connect", "timeout", "protocol", "client_abort"}

// write formats one entry: time is when the request or connection ended.
func (a *AccessLog) write(r accessRecord) {
	rec := slog.NewRecord(r.start.Add(r.dur), slog.LevelInfo, "access", 0)
	proto := "http"
	if r.tcp {
		proto = "tcp"
	} else if r.udp {
		proto = "udp"
	}
	rec.AddAttrs(
		slog.String("proto", proto),
		slog.Int("nodebalancer_id", r.nbID),
		slog.Int("config_id", r.configID),
		slog.String("client", r.client.String()),
		slog.String("addr", r.local.String()),
	)
	if r.dropRule != "" {
		rec.AddAttrs(slog.String("failure", "firewall"), slog.String("rule", r.dropRule))
		a.h.Handle(context.Background(), rec)
		return
	}
	if r.node.IsValid() {
		rec.AddAttrs(slog.String("node", r.node.String()))
	}
	if r.nodeID != 0 {
		rec.AddAttrs(slog.Int("node_id", r.nodeID))
	}
	if r.udp {
		rec.AddAttrs(slog.Int64("datagrams_in", r.dIn), slog.Int64("datagrams_out", r.dOut), slog.String("end", r.end))
	} else if !r.tcp {
		rec.AddAttrs(slog.String("method", r.method), slog.String("target", r.target), slog.Int("status", r.status))
		if int(r.failure) < len(failures) && r.failure != httpproxy.FailNone {
			rec.AddAttrs(slog.String("failure", failures[r.failure]))
		}
	} else if !r.node.IsValid() {
		rec.AddAttrs(slog.String("failure", "no node reachable"))
	}
	rec.AddAttrs(
		slog.Int64("bytes_in", r.bytesIn),
		slog.Int64("bytes_out", r.bytesOut),
		slog.Float64("duration_ms", float64(r.dur.Microseconds())/1000),
	)
	a.h.Handle(context.Background(), rec)
}
