package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"

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
	case model.CheckHTTP, model.CheckHTTPBody:
		err = c.httpCheck(ctx, n, cs)
	default:
		return nil
	}
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %v: %w", cs.Timeout, err)
	}
	return err
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
