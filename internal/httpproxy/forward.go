package httpproxy

// Hot path: building the heads sent to backends and clients. Each is appended to a
// reused buffer and sent with one write, usually together with a small body.

import (
	"net/netip"
	"strconv"
)

func appendField(out []byte, name, value []byte) []byte {
	out = append(out, name...)
	out = append(out, ':', ' ')
	out = append(out, value...)
	return append(out, '\r', '\n')
}

// appendRequestHead writes the head sent to the backend: the request line in HTTP/1.1
// (an absolute-form target in origin form), a Host when an HTTP/1.0 client sent none
// or the target's authority replaces it, the end-to-end fields as received, the
// forwarding fields, and the body framing re-stated from what was parsed.
func appendRequestHead(out []byte, req *request, client netip.Addr, local netip.AddrPort, scheme string, upgrade bool) []byte {
	out = append(out, req.method...)
	out = append(out, ' ')
	if req.authority == nil {
		out = append(out, req.target...)
	} else {
		out = appendOriginForm(out, req)
	}
	out = append(out, " HTTP/1.1\r\n"...)
	switch {
	case req.authority != nil:
		// RFC 9112 section 3.2.2: the target's authority, not the Host received.
		out = append(out, "Host: "...)
		out = append(out, req.authority...)
		out = append(out, '\r', '\n')
	case req.hosts == 0:
		// HTTP/1.0 allowed leaving Host out; HTTP/1.1, which backends are spoken to in,
		// does not. Name the address the client connected to.
		out = append(out, "Host: "...)
		out = local.AppendTo(out)
		out = append(out, '\r', '\n')
	}
	for k := range req.headers {
		h := &req.headers[k]
		switch h.kind {
		case hOther:
			if req.connOther && req.connectionLists(h.name) {
				continue
			}
		case hHost:
			if req.authority != nil {
				continue
			}
		case hCookie, hExpect:
		case hUpgrade:
			if !upgrade {
				continue
			}
		default:
			// Framing and hop-by-hop fields are re-stated below; the forwarding
			// fields are rebuilt so that a client cannot forge them.
			continue
		}
		out = appendField(out, h.name, h.value)
	}

	out = append(out, "X-Forwarded-For: "...)
	if req.nXFF > 0 {
		for k := range req.headers {
			if h := &req.headers[k]; h.kind == hXForwardedFor && len(h.value) > 0 {
				out = append(out, h.value...)
				out = append(out, ", "...)
			}
		}
	}
	out = client.AppendTo(out)
	out = append(out, "\r\nX-Forwarded-Proto: "...)
	out = append(out, scheme...)
	out = append(out, "\r\nX-Real-IP: "...)
	out = client.AppendTo(out)
	out = append(out, "\r\nForwarded: "...)
	if req.nForwarded > 0 {
		for k := range req.headers {
			if h := &req.headers[k]; h.kind == hForwarded && len(h.value) > 0 {
				out = append(out, h.value...)
				out = append(out, ", "...)
			}
		}
	}
	out = append(out, "for="...)
	if client.Is6() {
		out = append(out, `"[`...)
		out = client.AppendTo(out)
		out = append(out, `]"`...)
	} else {
		out = client.AppendTo(out)
	}
	out = append(out, ";proto="...)
	out = append(out, scheme...)
	out = append(out, '\r', '\n')

	switch {
	case req.chunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	case req.contentLength >= 0:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, req.contentLength, 10)
		out = append(out, '\r', '\n')
	}
	if upgrade {
		out = append(out, "Connection: upgrade\r\n"...)
	}
	return append(out, '\r', '\n')
}

// appendOriginForm writes the path and query of an absolute-form target: "/" when the
// path is empty, or "*" for an OPTIONS of the whole server (RFC 9112 section 3.2.4).
func appendOriginForm(out []byte, req *request) []byte {
	path := req.path
	if len(path) == 0 || path[0] != '/' {
		if len(path) == 0 && string(req.method) == "OPTIONS" {
			return append(out, '*')
		}
		out = append(out, '/')
	}
	return append(out, path...)
}

// respFraming says how the response body is delimited towards the client.
type respFraming uint8

const (
	frameNone    respFraming = iota // no body (HEAD, 1xx, 204, 304)
	frameLength                     // Content-Length
	frameChunked                    // chunked, passed through
	frameDechunk                    // chunked from the backend, decoded for an HTTP/1.0 client
	frameClose                      // delimited by closing the connection
)

// appendResponseHead writes the head sent to the client. setCookie, when not empty, is
// the NB_SRVID value to set.
func appendResponseHead(out []byte, resp *response, req *request, framing respFraming, clientKeep bool, setCookie string, secure bool) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(resp.status), 10)
	out = append(out, ' ')
	out = append(out, resp.reason...)
	out = append(out, '\r', '\n')
	interim := resp.status < 200
	for k := range resp.headers {
		h := &resp.headers[k]
		switch h.kind {
		case hOther:
			if resp.connOther && resp.connectionLists(h.name) {
				continue
			}
		case hUpgrade:
			if resp.status != 101 {
				continue
			}
		case hContentLength:
			// Without a body the length still describes the representation (HEAD, 304).
			if framing != frameNone || interim || resp.status == 204 {
				continue
			}
		case hTransferEncoding:
			if framing != frameNone || !req.isHead || req.minor == 0 {
				continue
			}
		case hConnection, hHopByHop:
			continue
		}
		out = appendField(out, h.name, h.value)
	}
	if interim {
		if resp.status == 101 {
			out = append(out, "Connection: upgrade\r\n"...)
		}
		return append(out, '\r', '\n')
	}
	if setCookie != "" {
		out = append(out, "Set-Cookie: "+stickyCookieName+"="...)
		out = append(out, setCookie...)
		out = append(out, "; Path=/; HttpOnly"...)
		if secure { // a cookie set over https is never sent back over plain http
			out = append(out, "; Secure"...)
		}
		out = append(out, '\r', '\n')
	}
	switch framing {
	case frameLength:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, resp.contentLength, 10)
		out = append(out, '\r', '\n')
	case frameChunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case !clientKeep:
		out = append(out, "Connection: close\r\n"...)
	case req.minor == 0:
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	return append(out, '\r', '\n')
}
