package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// UserAgent is the User-Agent of HTTP checks, so that backends can tell
// checks from clients in their logs.
const UserAgent = "nodebalancer-health-check/1"

// DefaultMaxBodyBytes is how much of a response body an http_body check reads
// and matches.
const DefaultMaxBodyBytes = 64 << 10

// prober runs one active check. Tests replace it to drive the state machine
// without a network.
type prober func(ctx context.Context, n *Node, cs *checkSpec) error

// Errors of active checks that are not network errors.
var (
	errBadAddress = errors.New("node address is not ip:port")
	errNoMatch    = errors.New("body does not match check_body")
)

// newTransport returns the HTTP transport of checks: HTTP/1.1, one connection
// per check (Connection: close), no proxy from the environment, no
// compression (the body is matched as the node sent it), and dialed through
// dialer so that the source address option applies.
func newTransport(dialer *net.Dialer) *http.Transport {
	var http1 http.Protocols
	http1.SetHTTP1(true)
	return &http.Transport{
		Protocols:              &http1,
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// probe runs one active check of n under cs.Timeout.
func (c *Checker) probe(ctx context.Context, n *Node, cs *checkSpec) error {
	if !n.addrOK {
		return errBadAddress
	}
	ctx, cancel := context.WithTimeout(ctx, cs.Timeout)
	defer cancel()
	var err error
	switch cs.Check {
	case model.CheckConnection:
		var conn net.Conn
		if conn, err = c.dialer.DialContext(ctx, "tcp", n.addr.String()); err == nil {
			conn.Close()
		}
	case model.CheckHTTP:
		err = c.statusCheck(ctx, n, cs)
	case model.CheckHTTPBody:
		err = c.httpCheck(ctx, n, cs)
	default:
		return nil
	}
	// The connection's deadline (statusCheck) may fire just before ctx's timer.
	if err != nil && (ctx.Err() == context.DeadlineExceeded || errors.Is(err, os.ErrDeadlineExceeded)) {
		return fmt.Errorf("timed out after %v: %w", cs.Timeout, err)
	}
	return err
}

// statusCheck is the http check: GET cs.Path over one connection and the status
// line of the answer, read with a small buffer and no HTTP client (a tenth of the
// CPU of net/http's). The request is the one httpCheck sends.
func (c *Checker) statusCheck(ctx context.Context, n *Node, cs *checkSpec) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", n.addr.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) }) // Set or Remove
	defer stop()
	if _, err := conn.Write(appendRequest(nil, n.addr, cs.Path)); err != nil {
		return err
	}
	code, err := readStatus(bufio.NewReaderSize(conn, 512))
	if err != nil {
		return err
	}
	if code < 200 || code > 399 {
		return fmt.Errorf("status %d", code)
	}
	return nil
}

// appendRequest appends the request of an http check of path on addr.
func appendRequest(b []byte, addr netip.AddrPort, path string) []byte {
	b = append(b, "GET "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = addr.AppendTo(b)
	return append(b, "\r\nUser-Agent: "+UserAgent+"\r\nAccept: */*\r\nConnection: close\r\n\r\n"...)
}

// readStatus returns the status code of the final response on r, skipping interim
// 1xx responses (other than 101) as an HTTP client does.
func readStatus(r *bufio.Reader) (int, error) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("read status line: %w", err)
		}
		code, ok := parseStatusLine(line)
		if !ok {
			return 0, fmt.Errorf("malformed status line %q", bytes.TrimRight(line, "\r\n"))
		}
		if code >= 200 || code == 101 {
			return code, nil
		}
		for { // an interim response: skip its header block
			h, err := r.ReadSlice('\n')
			if err != nil {
				return 0, fmt.Errorf("read interim response: %w", err)
			}
			if len(bytes.TrimRight(h, "\r\n")) == 0 {
				break
			}
		}
	}
}

// parseStatusLine reads "HTTP/1.x NNN ..." and returns NNN.
func parseStatusLine(line []byte) (int, bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false
	}
	code := 0
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, false
		}
		code = code*10 + int(d-'0')
	}
	if len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n' {
		return 0, false
	}
	if code < 100 {
		return 0, false
	}
	return code, true
}

// httpCheck sends GET cs.Path to n and judges the response.
func (c *Checker) httpCheck(ctx context.Context, n *Node, cs *checkSpec) error {
	if cs.Check == model.CheckHTTPBody && cs.bodyErr != nil {
		return fmt.Errorf("check_body: %w", cs.bodyErr)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.addr.String()+cs.Path, nil)
	if err != nil {
		return fmt.Errorf("check_path: %w", err)
	}
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if cs.Check != model.CheckHTTPBody {
		return nil
	}
	ok, err := matchBody(cs.body, resp.Body, c.maxBody)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if !ok {
		return errNoMatch
	}
	return nil
}

// matchBody reports whether re matches the first limit bytes of r. It reads
// no more than limit bytes, so a node cannot make a check buffer an endless
// body.
func matchBody(re *regexp.Regexp, r io.Reader, limit int) (bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)))
	if err != nil {
		return false, err
	}
	return re.Match(b), nil
}
