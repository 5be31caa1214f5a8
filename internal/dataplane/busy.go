package dataplane

import (
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// An http or https client over --max-conns is told so: "503 Service Unavailable" with
// Retry-After, then the connection closes. A tcp client gets a reset, as before: there
// is no protocol to say anything in.
const (
	// busyResponse is sent whatever the request was; it is written as soon as the
	// connection is accepted (the request is read and dropped afterwards).
	busyResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Cache-Control: no-store\r\n" +
		"Retry-After: 1\r\n" +
		"Content-Length: 24\r\n" +
		"Connection: close\r\n\r\n" +
		"503 Service Unavailable\n"
	// busyTimeout bounds the whole life of a refused connection: the TLS handshake,
	// the write and the lingering read.
	busyTimeout = 2 * time.Second
	// maxBusyAnswers bounds the refused connections being answered at once. Past it
	// (a flood, when answering would cost what the cap is there to protect) refused
	// clients get a reset again.
	maxBusyAnswers = 256
)

// answerBusy answers a refused http or https client with busyResponse on its own
// goroutine, and reports false when too many are being answered already (the caller
// resets the connection).
func (l *listener) answerBusy(s *snapshot, c *net.TCPConn) bool {
	p := l.plane
	if p.busy.Add(1) > maxBusyAnswers {
		p.busy.Add(-1)
		return false
	}
	s.stats.Refused.Add(1)
	s.nb.Refused.Add(1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer p.busy.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(busyTimeout))
		var w io.Writer = c
		var closeWrite func() error = c.CloseWrite
		if s.cfg.Protocol == model.ProtocolHTTPS {
			tc := tls.Server(c, s.tlsBusy)
			if tc.Handshake() != nil {
				return
			}
			w, closeWrite = tc, tc.CloseWrite
		}
		if _, err := io.WriteString(w, busyResponse); err != nil {
			return
		}
		// Closing with the request unread would send a reset, which may destroy the
		// response before the client reads it: end our side, then read what the
		// client sends until it closes (or the deadline).
		closeWrite()
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
	return true
}
