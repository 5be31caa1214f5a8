package httpproxy

// Hot path: the request and response head parsers run once per request. They parse in
// place (every field is a sub-slice of the read buffer), allocate nothing, and refuse
// anything that two HTTP implementations could read differently: that disagreement is
// what request smuggling exploits.

import "bytes"

// protoError is a refusal of a malformed message. It carries the status the proxy
// answers with (for requests) and a fixed reason; values are package-level so that
// returning one does not allocate.
type protoError struct {
	status int
	reason string
}

func (e *protoError) Error() string { return e.reason }

// Parse errors. The status is used for client requests; a malformed backend response is
// always a 502.
var (
	errBadRequestLine   = &protoError{400, "malformed request line"}
	errBadMethod        = &protoError{400, "invalid method"}
	errBadTarget        = &protoError{400, "invalid request target"}
	errBadVersion       = &protoError{400, "malformed HTTP version"}
	errVersion          = &protoError{505, "unsupported HTTP version"}
	errConnect          = &protoError{501, "CONNECT not supported"}
	errBareLF           = &protoError{400, "line not terminated by CRLF"}
	errObsFold          = &protoError{400, "obsolete header line folding"}
	errBadHeaderName    = &protoError{400, "invalid header name"}
	errBadHeaderValue   = &protoError{400, "invalid header value"}
	errTooManyHeaders   = &protoError{431, "too many header fields"}
	errHeadTooLarge     = &protoError{431, "header section too large"}
	errBadContentLength = &protoError{400, "invalid Content-Length"}
	errDupContentLength = &protoError{400, "repeated Content-Length"}
	errBadTE            = &protoError{400, "unsupported Transfer-Encoding"}
	errCLAndTE          = &protoError{400, "both Content-Length and Transfer-Encoding"}
	errTEOnHTTP10       = &protoError{400, "Transfer-Encoding in an HTTP/1.0 message"}
	errHost             = &protoError{400, "missing or repeated Host"}
	errBadConnection    = &protoError{400, "invalid Connection header"}
	errBadStatusLine    = &protoError{502, "malformed status line"}
	errBadChunk         = &protoError{400, "malformed chunked encoding"}
	errChunkTooLarge    = &protoError{400, "chunk size too large"}
	errChunkLineTooLong = &protoError{400, "chunk line too long"}
)

// maxHeaders bounds the header fields of one message; more is answered with 431.
const maxHeaders = 256

// hkind classifies a header field by the role it plays for the proxy.
type hkind uint8

const (
	hOther hkind = iota
	hHost
	hContentLength
	hTransferEncoding
	hConnection
	hUpgrade
	hExpect
	hCookie
	hXForwardedFor
	hForwarded
	hXForwardedProto
	hXRealIP
	hHopByHop // Keep-Alive, Proxy-Connection, TE, Trailer, Proxy-Authenticate, Proxy-Authorization
)

// header is one field line; name and value point into the read buffer. value has its
// surrounding whitespace removed.
type header struct {
	name, value []byte
	kind        hkind
}

// msgHead is what requests and responses share.
type msgHead struct {
	headers       []header
	contentLength int64 // -1 when absent
	chunked       bool
	minor         byte // HTTP/1.minor
	connClose     bool // Connection: close
	connKeepAlive bool // Connection: keep-alive
	connUpgrade   bool // Connection: upgrade
	connOther     bool // Connection lists other header names, to be removed
	hasUpgrade    bool // an Upgrade header is present
	nXFF          int  // X-Forwarded-For fields
	nForwarded    int  // Forwarded fields
}

func (h *msgHead) reset() {
	*h = msgHead{headers: h.headers[:0], contentLength: -1}
}

// request is a parsed request head.
type request struct {
	msgHead
	method, target []byte
	// authority and path split an absolute-form target ("http://authority/path?q");
	// authority is nil for the other forms.
	authority, path []byte
	isHead          bool
	expectContinue  bool
	hosts           int
	cookie          []byte // NB_SRVID cookie value, when asked for and present
	hasCookie       bool
}

// response is a parsed response head.
type response struct {
	msgHead
	status int
	reason []byte
}

// tchar reports the token characters of RFC 9110 section 5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

var crlfcrlf = []byte("\r\n\r\n")

// findHeadEnd returns the length of the head at the start of b (through the blank line),
// 0 when b does not hold a whole head yet, or an error when b can never become a valid
// head (a bare LF ends a line).
func findHeadEnd(b []byte) (int, error) {
	if i := bytes.Index(b, crlfcrlf); i >= 0 {
		return i + 4, nil
	}
	// Without a CRLF CRLF, a blank line can only follow a bare LF: refuse now rather
	// than wait for the header timeout.
	if bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n")) {
		return 0, errBareLF
	}
	return 0, nil
}

// eqFold reports whether b equals the lower-case ASCII string s, ignoring ASCII case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// eqFoldBytes compares two byte strings ignoring ASCII case.
func eqFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func classify(name []byte) hkind {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return hHopByHop
		}
	case 4:
		if eqFold(name, "host") {
			return hHost
		}
	case 6:
		if eqFold(name, "cookie") {
			return hCookie
		}
		if eqFold(name, "expect") {
			return hExpect
		}
	case 7:
		if eqFold(name, "upgrade") {
			return hUpgrade
		}
		if eqFold(name, "trailer") {
			return hHopByHop
		}
	case 9:
		if eqFold(name, "x-real-ip") {
			return hXRealIP
		}
		if eqFold(name, "forwarded") {
			return hForwarded
		}
	case 10:
		if eqFold(name, "connection") {
			return hConnection
		}
		if eqFold(name, "keep-alive") {
			return hHopByHop
		}
	case 14:
		if eqFold(name, "content-length") {
			return hContentLength
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return hXForwardedFor
		}
	case 16:
		if eqFold(name, "proxy-connection") {
			return hHopByHop
		}
	case 17:
		if eqFold(name, "transfer-encoding") {
			return hTransferEncoding
		}
		if eqFold(name, "x-forwarded-proto") {
			return hXForwardedProto
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return hHopByHop
		}
	case 19:
		if eqFold(name, "proxy-authorization") {
			return hHopByHop
		}
	}
	return hOther
}

// parseRequest parses the request head b, which ends with the blank line (as found by
// findHeadEnd). When sticky is set the NB_SRVID cookie is looked up.
func parseRequest(b []byte, req *request, sticky bool) error {
	req.msgHead.reset()
	req.method, req.target, req.authority, req.path = nil, nil, nil, nil
	req.isHead, req.expectContinue, req.hosts = false, false, 0
	req.cookie, req.hasCookie = nil, false

	// request-line = method SP request-target SP HTTP-version CRLF
	i := 0
	for tchar[b[i]] {
		i++
	}
	if i == 0 || b[i] != ' ' {
		if i > 0 && (b[i] == '\r' || b[i] == '\n') {
			return errBadRequestLine
		}
		return errBadMethod
	}
	req.method = b[:i]
	i++
	ts := i
	for c := b[i]; c > 0x20 && c < 0x7f; c = b[i] {
		i++
	}
	if i == ts || b[i] != ' ' {
		return errBadTarget
	}
	req.target = b[ts:i]
	i++
	if len(b)-i < 10 || b[i+8] != '\r' || b[i+9] != '\n' {
		return errBadVersion
	}
	v := b[i : i+8]
	switch {
	case string(v) == "HTTP/1.1":
		req.minor = 1
	case string(v) == "HTTP/1.0":
		req.minor = 0
	case string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]):
		return errVersion
	default:
		return errBadVersion
	}
	i += 10

	if err := checkTarget(req.method, req.target); err != nil {
		return err
	}
	if c := req.target[0]; c != '/' && c != '*' {
		if err := req.splitAbsolute(); err != nil {
			return err
		}
	}
	req.isHead = string(req.method) == "HEAD"

	if err := parseFields(b, i, &req.msgHead); err != nil {
		return err
	}
	for k := range req.headers {
		h := &req.headers[k]
		switch h.kind {
		case hHost:
			req.hosts++
		case hExpect:
			if eqFold(h.value, "100-continue") {
				req.expectContinue = true
			}
		case hCookie:
			if sticky && !req.hasCookie {
				req.cookie, req.hasCookie = findCookie(h.value, stickyCookieName)
			}
		}
	}
	if req.hosts > 1 || (req.minor == 1 && req.hosts == 0) {
		return errHost
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// checkTarget accepts the origin form ("/path?q"), the absolute form
// ("http://host/path") and, for OPTIONS only, the asterisk form. CONNECT (authority form)
// is not something a reverse proxy serves.
func checkTarget(method, target []byte) error {
	if string(method) == "CONNECT" {
		return errConnect
	}
	switch {
	case target[0] == '/':
		return nil
	case len(target) == 1 && target[0] == '*':
		if string(method) == "OPTIONS" {
			return nil
		}
	case hasPrefixFold(target, "http://") || hasPrefixFold(target, "https://"):
		return nil
	}
	return errBadTarget
}

// splitAbsolute splits an absolute-form target (checkTarget has seen its scheme) into
// authority and path. RFC 9112 section 3.2.2: a server receiving the absolute form
// must ignore Host and use the target's authority instead. The proxy therefore
// forwards the request in origin form with Host set to that authority
// (appendRequestHead), so that the backend sees one host, the one the client named in
// the target, whatever it does with absolute forms itself. An empty authority or one
// with userinfo ("user@host", which RFC 9110 section 4.2.4 forbids in http(s) URIs)
// is refused.
func (req *request) splitAbsolute() error {
	rest := req.target[len("http://"):]
	if req.target[4] != ':' { // https
		rest = req.target[len("https://"):]
	}
	end := len(rest)
	for i, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
	}
	authority := rest[:end]
	if len(authority) == 0 || bytes.IndexByte(authority, '@') >= 0 {
		return errBadTarget
	}
	req.authority, req.path = authority, rest[end:]
	return nil
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && eqFold(b[:len(prefix)], prefix)
}

// parseResponse parses the response head b, which ends with the blank line.
func parseResponse(b []byte, resp *response) error {
	resp.msgHead.reset()
	resp.status, resp.reason = 0, nil
	// status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
	// The SP after the code is required by RFC 9112 but widely omitted; accept its absence.
	if len(b) < 14 || string(b[:7]) != "HTTP/1." || (b[7] != '0' && b[7] != '1') || b[8] != ' ' ||
		b[9] < '1' || b[9] > '5' || !isDigit(b[10]) || !isDigit(b[11]) {
		return errBadStatusLine
	}
	resp.minor = b[7] - '0'
	resp.status = int(b[9]-'0')*100 + int(b[10]-'0')*10 + int(b[11]-'0')
	i := 12
	if b[i] == ' ' {
		i++
		rs := i
		for c := b[i]; c >= 0x20 && c != 0x7f || c == '\t'; c = b[i] {
			i++
		}
		resp.reason = b[rs:i]
	}
	if b[i] != '\r' || b[i+1] != '\n' {
		return errBadStatusLine
	}
	return parseFields(b, i+2, &resp.msgHead)
}

// parseFields parses the field lines of b from i through the blank line and the
// framing-related ones among them. b ends with CRLF CRLF, which bounds every scan.
func parseFields(b []byte, i int, h *msgHead) error {
	for {
		if b[i] == '\r' {
			if b[i+1] != '\n' {
				return errBareLF
			}
			break
		}
		if b[i] == ' ' || b[i] == '\t' {
			return errObsFold
		}
		ns := i
		for tchar[b[i]] {
			i++
		}
		if i == ns || b[i] != ':' {
			if b[i] == '\n' {
				return errBareLF
			}
			return errBadHeaderName
		}
		name := b[ns:i]
		i++
		for b[i] == ' ' || b[i] == '\t' {
			i++
		}
		vs := i
		for c := b[i]; c >= 0x20 && c != 0x7f || c == '\t'; c = b[i] {
			i++
		}
		if b[i] != '\r' || b[i+1] != '\n' {
			if b[i] == '\n' {
				return errBareLF
			}
			return errBadHeaderValue
		}
		ve := i
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		i += 2
		if len(h.headers) == maxHeaders {
			return errTooManyHeaders
		}
		h.headers = append(h.headers, header{name: name, value: b[vs:ve], kind: classify(name)})
	}
	for k := range h.headers {
		f := &h.headers[k]
		switch f.kind {
		case hContentLength:
			if h.contentLength >= 0 {
				return errDupContentLength
			}
			n, ok := parseContentLength(f.value)
			if !ok {
				return errBadContentLength
			}
			h.contentLength = n
		case hTransferEncoding:
			// Only a single, exact "chunked" is accepted: a list ("gzip, chunked"), a
			// repeat or any other coding is where parsers disagree about the body's end.
			if h.chunked || !eqFold(f.value, "chunked") {
				return errBadTE
			}
			h.chunked = true
		case hConnection:
			if err := parseConnection(f.value, h); err != nil {
				return err
			}
		case hUpgrade:
			h.hasUpgrade = true
		case hXForwardedFor:
			h.nXFF++
		case hForwarded:
			h.nForwarded++
		}
	}
	if h.chunked {
		if h.contentLength >= 0 {
			return errCLAndTE
		}
		if h.minor == 0 {
			return errTEOnHTTP10
		}
	}
	return nil
}

// parseContentLength accepts 1 to 18 decimal digits and nothing else: no sign, no
// whitespace inside, no list.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseConnection reads the comma-separated options of a Connection field.
func parseConnection(v []byte, h *msgHead) error {
	for len(v) > 0 {
		var tok []byte
		if k := bytes.IndexByte(v, ','); k >= 0 {
			tok, v = v[:k], v[k+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		if len(tok) == 0 {
			continue // empty list elements are allowed
		}
		for _, c := range tok {
			if !tchar[c] {
				return errBadConnection
			}
		}
		switch {
		case eqFold(tok, "close"):
			h.connClose = true
		case eqFold(tok, "keep-alive"):
			h.connKeepAlive = true
		case eqFold(tok, "upgrade"):
			h.connUpgrade = true
		default:
			h.connOther = true
		}
	}
	return nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// connectionLists reports whether a Connection field of h names the header name, which
// makes that header hop-by-hop.
func (h *msgHead) connectionLists(name []byte) bool {
	for k := range h.headers {
		f := &h.headers[k]
		if f.kind != hConnection {
			continue
		}
		v := f.value
		for len(v) > 0 {
			var tok []byte
			if j := bytes.IndexByte(v, ','); j >= 0 {
				tok, v = v[:j], v[j+1:]
			} else {
				tok, v = v, nil
			}
			if eqFoldBytes(trimOWS(tok), name) {
				return true
			}
		}
	}
	return false
}

// stickyCookieName is the cookie that pins a client to a backend, as Linode names it.
const stickyCookieName = "NB_SRVID"

// findCookie returns the value of the cookie called name in a Cookie field value
// ("a=1; NB_SRVID=x; b=2"). Cookie names are case-sensitive.
func findCookie(v []byte, name string) ([]byte, bool) {
	for len(v) > 0 {
		var pair []byte
		if k := bytes.IndexByte(v, ';'); k >= 0 {
			pair, v = v[:k], v[k+1:]
		} else {
			pair, v = v, nil
		}
		pair = trimOWS(pair)
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			val := pair[len(name)+1:]
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return val, true
		}
	}
	return nil, false
}
