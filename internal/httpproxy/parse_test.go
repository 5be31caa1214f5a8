package httpproxy

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseWhole finds the head end and parses s as a request head.
func parseWhole(s string, req *request) error {
	b := []byte(s)
	end, err := findHeadEnd(b)
	if err != nil {
		return err
	}
	if end == 0 {
		return errors.New("incomplete head")
	}
	return parseRequest(b[:end], req, true)
}

func TestParseRequestRefusals(t *testing.T) {
	const ok = "GET / HTTP/1.1\r\nHost: h\r\n"
	tests := []struct {
		name string
		head string
		want *protoError
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", errCLAndTE},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", errCLAndTE},
		{"repeated identical CL", ok + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", errDupContentLength},
		{"repeated different CL", ok + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", errDupContentLength},
		{"CL list", ok + "Content-Length: 5, 5\r\n\r\n", errBadContentLength},
		{"CL sign", ok + "Content-Length: +5\r\n\r\n", errBadContentLength},
		{"CL negative", ok + "Content-Length: -1\r\n\r\n", errBadContentLength},
		{"CL hex", ok + "Content-Length: 0x5\r\n\r\n", errBadContentLength},
		{"CL empty", ok + "Content-Length: \r\n\r\n", errBadContentLength},
		{"CL inner space", ok + "Content-Length: 1 2\r\n\r\n", errBadContentLength},
		{"CL overflow", ok + "Content-Length: 9999999999999999999\r\n\r\n", errBadContentLength},
		{"TE gzip", ok + "Transfer-Encoding: gzip\r\n\r\n", errBadTE},
		{"TE list", ok + "Transfer-Encoding: gzip, chunked\r\n\r\n", errBadTE},
		{"TE chunked twice in one", ok + "Transfer-Encoding: chunked, chunked\r\n\r\n", errBadTE},
		{"TE repeated", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", errBadTE},
		{"TE identity", ok + "Transfer-Encoding: identity\r\n\r\n", errBadTE},
		{"TE with vertical tab", ok + "Transfer-Encoding: \x0bchunked\r\n\r\n", errBadHeaderValue},
		{"TE xchunked", ok + "Transfer-Encoding: xchunked\r\n\r\n", errBadTE},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", errTEOnHTTP10},
		{"space before colon", ok + "Transfer-Encoding : chunked\r\n\r\n", errBadHeaderName},
		{"obs-fold", ok + "X-A: a\r\n b\r\n\r\n", errObsFold},
		{"obs-fold tab", ok + "X-A: a\r\n\tb\r\n\r\n", errObsFold},
		{"bare LF in fields", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", errBareLF},
		{"bare LF head end", "GET / HTTP/1.1\r\nHost: h\n\n", errBareLF},
		{"bare CR in value", ok + "X: a\rb\r\n\r\n", errBadHeaderValue},
		{"NUL in value", ok + "X: a\x00b\r\n\r\n", errBadHeaderValue},
		{"DEL in value", ok + "X: a\x7fb\r\n\r\n", errBadHeaderValue},
		{"empty name", ok + ": v\r\n\r\n", errBadHeaderName},
		{"bad name char", ok + "X(Y): v\r\n\r\n", errBadHeaderName},
		{"no colon", ok + "Novalue\r\n\r\n", errBadHeaderName},
		{"lowercase method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"bad method char", "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", errBadMethod},
		{"empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", errBadMethod},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", errBadTarget},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", errBadVersion},
		{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", errBadTarget},
		{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", errBadTarget},
		{"relative target", "GET a HTTP/1.1\r\nHost: h\r\n\r\n", errBadTarget},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", errBadTarget},
		{"asterisk with OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"absolute form", "GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", errConnect},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", errVersion},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", errVersion},
		{"lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", errBadVersion},
		{"HTTP/0.9 line", "GET /\r\n\r\n", errBadTarget},
		{"version trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", errBadVersion},
		{"long version", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", errBadVersion},
		{"missing Host on 1.1", "GET / HTTP/1.1\r\n\r\n", errHost},
		{"repeated Host", ok + "Host: h\r\n\r\n", errHost},
		{"no Host on 1.0 is fine", "GET / HTTP/1.0\r\n\r\n", nil},
		{"bad Connection token", ok + "Connection: clo se\r\n\r\n", errBadConnection},
		{"Connection empty elements", ok + "Connection: , close ,\r\n\r\n", nil},
		{"obs-text in value", ok + "X: caf\xc3\xa9\r\n\r\n", nil},
		{"tab in value", ok + "X: a\tb\r\n\r\n", nil},
		{"CL zero", ok + "Content-Length: 0\r\n\r\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req request
			err := parseWhole(tt.head, &req)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused a valid head: %v", err)
				}
				return
			}
			if err != tt.want {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseRequestFields(t *testing.T) {
	var req request
	head := "POST /p?q HTTP/1.1\r\nHost: example.test\r\nContent-Length: 42\r\nconnection: Keep-Alive, X-Drop, Upgrade\r\n" +
		"Upgrade: websocket\r\nExpect: 100-Continue\r\nCookie: a=1; NB_SRVID=\"srv-2\"; b=2\r\nX-Spaces:  v v \t\r\n\r\n"
	if err := parseWhole(head, &req); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"method", string(req.method) == "POST"},
		{"target", string(req.target) == "/p?q"},
		{"minor", req.minor == 1},
		{"content length", req.contentLength == 42 && !req.chunked},
		{"connection options", req.connKeepAlive && req.connUpgrade && req.connOther && !req.connClose},
		{"upgrade", req.hasUpgrade},
		{"expect", req.expectContinue},
		{"cookie", req.hasCookie && string(req.cookie) == "srv-2"},
		{"value trimmed", string(req.headers[len(req.headers)-1].value) == "v v"},
		{"connection lists X-Drop", req.connectionLists([]byte("x-drop")) && !req.connectionLists([]byte("X-Other"))},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s wrong: %+v", c.name, req)
		}
	}
}

func TestFindCookie(t *testing.T) {
	tests := []struct {
		in, want string
		found    bool
	}{
		{"NB_SRVID=a", "a", true},
		{"x=1;NB_SRVID=b;y=2", "b", true},
		{"x=1; nb_srvid=c", "", false},
		{"XNB_SRVID=d", "", false},
		{"NB_SRVID=", "", true},
		{"", "", false},
	}
	for _, tt := range tests {
		v, ok := findCookie([]byte(tt.in), stickyCookieName)
		if string(v) != tt.want || ok != tt.found {
			t.Errorf("findCookie(%q) = %q, %v; want %q, %v", tt.in, v, ok, tt.want, tt.found)
		}
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name   string
		head   string
		status int
		ok     bool
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 200, true},
		{"no reason", "HTTP/1.1 204 \r\n\r\n", 204, true},
		{"no space after code", "HTTP/1.1 204\r\n\r\n", 204, true},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\n\r\n", 200, true},
		{"bad version", "HTTP/2.0 200 OK\r\n\r\n", 0, false},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 0, false},
		{"status 600", "HTTP/1.1 600 X\r\n\r\n", 0, false},
		{"double CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 0, false},
		{"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false},
		{"TE gzip,chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 0, false},
		{"control char in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp response
			b := []byte(tt.head)
			end, err := findHeadEnd(b)
			if err == nil && end > 0 {
				err = parseResponse(b[:end], &resp)
			} else if err == nil {
				err = errors.New("incomplete")
			}
			if (err == nil) != tt.ok || (tt.ok && resp.status != tt.status) {
				t.Fatalf("err %v status %d; want ok=%v status %d", err, resp.status, tt.ok, tt.status)
			}
		})
	}
}

// decodeChunked runs the scanner over in, split into pieces of size step, and returns
// the decoded data.
func decodeChunked(in []byte, step int) (data []byte, done bool, err error) {
	var cs chunkScanner
	for off := 0; off < len(in) && !cs.done(); {
		end := min(off+step, len(in))
		p := in[off:end]
		n, isData, err := cs.next(p)
		if err != nil {
			return data, false, err
		}
		if n == 0 && !cs.done() {
			return data, false, errors.New("no progress")
		}
		if isData {
			data = append(data, p[:n]...)
		}
		off += n
	}
	return data, cs.done(), nil
}

func TestChunkedScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string
		data string
		err  error
	}{
		{"simple", "3\r\nabc\r\n0\r\n\r\n", "abc", nil},
		{"hex sizes", "A\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n", "01234567890123456789abcde", nil},
		{"uppercase and leading zeros", "00B\r\nhello world\r\n000\r\n\r\n", "hello world", nil},
		{"extensions", "3;a=b;c;d=\"q\\\"x\"\r\nabc\r\n0;last\r\n\r\n", "abc", nil},
		{"extension with BWS", "3 ;a = b\r\nabc\r\n0\r\n\r\n", "abc", nil},
		{"trailers", "1\r\nx\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", "x", nil},
		{"empty size", "\r\nabc\r\n0\r\n\r\n", "", errBadChunk},
		{"negative size", "-1\r\nabc\r\n0\r\n\r\n", "", errBadChunk},
		{"0x prefix", "0x3\r\nabc\r\n0\r\n\r\n", "", errBadChunk},
		{"too many digits", "00000000000000001\r\nabc\r\n", "", errChunkTooLarge},
		{"too large", "ffffffffffffffff\r\n", "", errChunkTooLarge},
		{"bare LF after size", "3\nabc\r\n0\r\n\r\n", "", errBadChunk},
		{"bare CR after size", "3\rabc\r\n0\r\n\r\n", "", errBadChunk},
		{"missing CRLF after data", "3\r\nabcd\r\n0\r\n\r\n", "abc", errBadChunk},
		{"LF only after data", "3\r\nabc\n0\r\n\r\n", "abc", errBadChunk},
		{"trailing space after size", "3 \r\nabc\r\n0\r\n\r\n", "", errBadChunk},
		{"bad ext char", "3;a=\x01\r\nabc\r\n0\r\n\r\n", "", errBadChunk},
		{"unterminated quote", "3;a=\"x\r\nabc\r\n", "", errBadChunk},
		{"ext without name", "3;=x\r\nabc\r\n0\r\n\r\n", "", errBadChunk},
		{"bare LF at end", "0\r\n\n", "", errBadChunk},
		{"obs-fold trailer", "0\r\nX: a\r\n b\r\n\r\n", "", errBadChunk},
		{"trailer without colon", "0\r\nXY\r\n\r\n", "", errBadChunk},
		{"trailer control char", "0\r\nX: \x01\r\n\r\n", "", errBadChunk},
		{"long extension", "1;" + strings.Repeat("a", maxChunkLine) + "\r\n", "", errChunkLineTooLong},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 1 << 20} {
			data, done, err := decodeChunked([]byte(tt.in), step)
			if tt.err != nil {
				if err != tt.err {
					t.Errorf("%s (step %d): err %v, want %v", tt.name, step, err, tt.err)
				}
				continue
			}
			if err != nil || !done || string(data) != tt.data {
				t.Errorf("%s (step %d): data %q done %v err %v; want %q", tt.name, step, data, done, err, tt.data)
			}
		}
	}
}

func TestChunkedScannerStopsAtBodyEnd(t *testing.T) {
	in := []byte("1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n")
	var cs chunkScanner
	total := 0
	for !cs.done() {
		n, _, err := cs.next(in[total:])
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != len("1\r\nx\r\n0\r\n\r\n") {
		t.Errorf("scanner consumed %d bytes, past the body's end", total)
	}
}

// FuzzParseRequest checks that the parser never panics and never accepts a head whose
// framing is ambiguous, and that what it accepts re-serializes into a head it accepts
// again with the same framing.
func FuzzParseRequest(f *testing.F) {
	addSeeds(f, "request")
	f.Fuzz(func(t *testing.T, in []byte) {
		end, err := findHeadEnd(in)
		if err != nil || end == 0 {
			return
		}
		var req request
		if err := parseRequest(in[:end], &req, true); err != nil {
			return
		}
		head := string(in[:end])
		if req.chunked && req.contentLength >= 0 {
			t.Fatalf("accepted both framings: %q", head)
		}
		if strings.ContainsAny(string(req.target), " \r\n\t") {
			t.Fatalf("accepted target %q", req.target)
		}
		out := appendRequestHead(nil, &req, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddrPort("192.0.2.2:80"), "http", false)
		var again request
		e2, err := findHeadEnd(out)
		if err != nil || e2 != len(out) {
			t.Fatalf("forwarded head has no clean end: %q", out)
		}
		if err := parseRequest(out, &again, true); err != nil {
			t.Fatalf("forwarded head refused (%v): %q from %q", err, out, head)
		}
		// An absolute-form target goes out in origin form, its authority as the one Host.
		wantTarget := req.target
		if req.authority != nil {
			wantTarget = appendOriginForm(nil, &req)
			if again.hosts != 1 || !bytes.Contains(out, []byte("\r\nHost: "+string(req.authority)+"\r\n")) {
				t.Fatalf("absolute form without its authority as Host: %q -> %q", head, out)
			}
		}
		if again.chunked != req.chunked || again.contentLength != req.contentLength || !bytes.Equal(again.target, wantTarget) {
			t.Fatalf("framing changed: %q -> %q", head, out)
		}
	})
}

// FuzzChunked checks that the scanner never panics, consumes input, and decodes the
// same bytes whatever the read sizes.
func FuzzChunked(f *testing.F) {
	addSeeds(f, "chunked")
	f.Fuzz(func(t *testing.T, in []byte) {
		d1, done1, err1 := decodeChunked(in, 1<<20)
		d2, done2, err2 := decodeChunked(in, 1)
		if (err1 == nil) != (err2 == nil) || done1 != done2 || !bytes.Equal(d1, d2) {
			t.Fatalf("split reads disagree on %q: %q/%v/%v vs %q/%v/%v", in, d1, done1, err1, d2, done2, err2)
		}
	})
}

// addSeeds adds every file of testdata/<dir> to the corpus.
func addSeeds(f *testing.F, dir string) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseResponse checks that the response parser never panics, never accepts a
// response whose body framing is ambiguous, and that what it accepts is relayed as a
// head it accepts again, with the status and the framing responseFraming chose.
func FuzzParseResponse(f *testing.F) {
	addSeeds(f, "response")
	get, head := []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), []byte("HEAD / HTTP/1.0\r\n\r\n")
	f.Fuzz(func(t *testing.T, in []byte) {
		end, err := findHeadEnd(in)
		if err != nil || end == 0 {
			return
		}
		var resp response
		if err := parseResponse(in[:end], &resp); err != nil {
			return
		}
		h := string(in[:end])
		if resp.status < 100 || resp.status > 599 {
			t.Fatalf("accepted status %d: %q", resp.status, h)
		}
		if resp.chunked && resp.contentLength >= 0 {
			t.Fatalf("accepted both framings: %q", h)
		}
		if resp.chunked && resp.minor == 0 {
			t.Fatalf("accepted chunked HTTP/1.0: %q", h)
		}
		for _, raw := range [][]byte{get, head} {
			var req request
			if err := parseRequest(raw, &req, false); err != nil {
				t.Fatal(err)
			}
			fr := responseFraming(&req, &resp, true)
			if resp.status < 200 {
				fr.out = frameNone
			}
			out := appendResponseHead(nil, &resp, &req, fr.out, fr.clientKeep, "v", true)
			if e2, err := findHeadEnd(out); err != nil || e2 != len(out) {
				t.Fatalf("relayed head has no clean end: %q", out)
			}
			var again response
			if err := parseResponse(out, &again); err != nil {
				t.Fatalf("relayed head refused (%v): %q from %q", err, out, h)
			}
			if again.status != resp.status {
				t.Fatalf("status changed: %q -> %q", h, out)
			}
			switch fr.out {
			case frameLength:
				if again.contentLength != resp.contentLength || again.chunked {
					t.Fatalf("length framing changed: %q -> %q", h, out)
				}
			case frameChunked:
				if !again.chunked || again.contentLength >= 0 {
					t.Fatalf("chunked framing changed: %q -> %q", h, out)
				}
			case frameClose, frameDechunk:
				if again.chunked || again.contentLength >= 0 || !again.connClose {
					t.Fatalf("a close-delimited body must say so and carry no length: %q -> %q", h, out)
				}
			}
		}
	})
}
