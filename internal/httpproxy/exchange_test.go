package httpproxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestResponseFraming: how each kind of final response is delimited both ways, and
// which connections survive it.
func TestResponseFraming(t *testing.T) {
	type want = framing
	tests := []struct {
		name       string
		req, resp  string
		clientKeep bool
		want       want
	}{
		{"content-length", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true,
			want{bodyLength, frameLength, true, true}},
		{"chunked to HTTP/1.1", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true,
			want{bodyChunked, frameChunked, true, true}},
		{"chunked to HTTP/1.0 is decoded, then the client closes", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true,
			want{bodyChunked, frameDechunk, false, true}},
		{"no length: until close, both close", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n", true,
			want{bodyUntilClose, frameClose, false, false}},
		{"HEAD has no body whatever the length", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true,
			want{bodyNone, frameNone, true, true}},
		{"HEAD without length keeps both", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n", true,
			want{bodyNone, frameNone, true, true}},
		{"204", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n", true,
			want{bodyNone, frameNone, true, true}},
		{"304", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", true,
			want{bodyNone, frameNone, true, true}},
		{"backend says close", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", true,
			want{bodyLength, frameLength, true, false}},
		{"HTTP/1.0 backend without keep-alive", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", true,
			want{bodyLength, frameLength, true, false}},
		{"HTTP/1.0 backend with keep-alive", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", true,
			want{bodyLength, frameLength, true, true}},
		{"client already closing", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", false,
			want{bodyLength, frameLength, false, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req request
			var resp response
			if err := parseRequest([]byte(tc.req), &req, false); err != nil {
				t.Fatalf("request: %v", err)
			}
			if err := parseResponse([]byte(tc.resp), &resp); err != nil {
				t.Fatalf("response: %v", err)
			}
			if got := responseFraming(&req, &resp, tc.clientKeep); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestResendRules: when a request that met a failing pooled connection is sent again.
func TestResendRules(t *testing.T) {
	parse := func(head string) *request {
		var req request
		if err := parseRequest([]byte(head), &req, false); err != nil {
			t.Fatalf("%q: %v", head, err)
		}
		return &req
	}
	get := parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	post := parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
	keyed := parse("POST / HTTP/1.1\r\nHost: h\r\nIdempotency-Key: 7\r\nContent-Length: 0\r\n\r\n")
	put := parse("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")

	writes := []struct {
		name          string
		req           *request
		reused, wrote bool
		want          bool
	}{
		{"GET, pooled, partly written", get, true, true, true},
		{"POST, pooled, nothing written", post, true, false, true},
		{"POST, pooled, partly written", post, true, true, false},
		{"POST with Idempotency-Key, partly written", keyed, true, true, true},
		{"PUT, partly written (as net/http: not trusted)", put, true, true, false},
		{"GET on a new connection", get, false, false, false},
	}
	for _, tc := range writes {
		if got := resendAfterWriteFailure(tc.req, tc.reused, tc.wrote); got != tc.want {
			t.Errorf("write failure, %s: %v, want %v", tc.name, got, tc.want)
		}
	}

	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	reads := []struct {
		name                          string
		req                           *request
		reused, streaming, sawInterim bool
		respBytes                     int64
		err                           error
		want                          bool
	}{
		{"GET, pooled, EOF", get, true, false, false, 0, io.EOF, true},
		{"GET, pooled, reset", get, true, false, false, 0, syscall.ECONNRESET, true},
		{"POST, pooled, EOF", post, true, false, false, 0, io.EOF, false},
		{"POST with Idempotency-Key, pooled, EOF", keyed, true, false, false, 0, io.EOF, true},
		{"GET on a new connection", get, false, false, false, 0, io.EOF, false},
		{"GET with a streamed body", get, true, true, false, 0, io.EOF, false},
		{"GET after an interim response", get, true, false, true, 0, io.EOF, false},
		{"GET after part of a head", get, true, false, false, 10, io.EOF, false},
		{"GET timed out", get, true, false, false, 0, timeout, false},
		{"GET, malformed response", get, true, false, false, 0, errMalformedResponse, false},
	}
	for _, tc := range reads {
		if got := resendAfterReadFailure(tc.req, tc.reused, tc.streaming, tc.sawInterim, tc.respBytes, tc.err); got != tc.want {
			t.Errorf("read failure, %s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
