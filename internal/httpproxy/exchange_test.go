package httpproxy

import "testing"

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
