// Package proxyproto writes and reads the PROXY protocol header (versions 1 and 2,
// haproxy.org/download/2.9/doc/proxy-protocol.txt) that a tcp config sends to its
// nodes so they learn the real client and frontend addresses.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// v2Signature opens every version 2 header.
var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// AppendV1 appends the text header for a connection from src to dst. When only one
// side is IPv4 both are sent as IPv6 (the IPv4 one mapped), so no address is lost.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	s, d := family(src.Addr(), dst.Addr())
	if s.Is4() {
		b = append(b, "PROXY TCP4 "...)
	} else {
		b = append(b, "PROXY TCP6 "...)
	}
	b = s.AppendTo(b)
	b = append(b, ' ')
	b = d.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, "\r\n"...)
}

// AppendV2 appends the binary header (command PROXY, stream transport) for a
// connection from src to dst.
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, v2Signature...)
	s, d := family(src.Addr(), dst.Addr())
	if s.Is4() {
		b = append(b, 0x21, 0x11, 0, 12)
		a4, d4 := s.As4(), d.As4()
		b = append(b, a4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, 0x21, 0x21, 0, 36)
		a16, d16 := s.As16(), d.As16()
		b = append(b, a16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// family returns s and d as two IPv4 addresses when both are IPv4 (mapped or not),
// else as two IPv6 addresses.
func family(s, d netip.Addr) (netip.Addr, netip.Addr) {
	s, d = s.Unmap(), d.Unmap()
	if s.Is4() && d.Is4() {
		return s, d
	}
	return netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
}

// Header is a parsed PROXY header. Local is true for a version 2 LOCAL command or a
// version 1 UNKNOWN line: the connection carries no client addresses.
type Header struct {
	Version     int
	Source, Dst netip.AddrPort
	Local       bool
}

// ErrNoHeader means the stream does not start with a PROXY header.
var ErrNoHeader = errors.New("proxyproto: no PROXY header")

// maxV1 is the longest version 1 line the specification allows, CRLF included.
const maxV1 = 107

// Read consumes one PROXY header (either version) from r.
func Read(r *bufio.Reader) (Header, error) {
	peek, err := r.Peek(1)
	if err != nil {
		return Header{}, err
	}
	switch peek[0] {
	case 'P':
		return readV1(r)
	case '\r':
		return readV2(r)
	}
	return Header{}, ErrNoHeader
}

func readV1(r *bufio.Reader) (Header, error) {
	var line []byte
	for len(line) < maxV1 {
		c, err := r.ReadByte()
		if err != nil {
			return Header{}, err
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return Header{}, errors.New("proxyproto: v1 line not ended by CRLF within 107 bytes")
	}
	f := bytes.Split(line[:len(line)-2], []byte(" "))
	if len(f) < 2 || string(f[0]) != "PROXY" {
		return Header{}, ErrNoHeader
	}
	if string(f[1]) == "UNKNOWN" {
		return Header{Version: 1, Local: true}, nil
	}
	if len(f) != 6 || (string(f[1]) != "TCP4" && string(f[1]) != "TCP6") {
		return Header{}, fmt.Errorf("proxyproto: malformed v1 line %q", line)
	}
	src, err1 := netip.ParseAddr(string(f[2]))
	dst, err2 := netip.ParseAddr(string(f[3]))
	sp, err3 := parsePort(f[4])
	dp, err4 := parsePort(f[5])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Header{}, fmt.Errorf("proxyproto: malformed v1 line %q: %w", line, err)
	}
	if src.Is4() != (string(f[1]) == "TCP4") || dst.Is4() != src.Is4() {
		return Header{}, fmt.Errorf("proxyproto: v1 addresses do not match %s", f[1])
	}
	return Header{Version: 1, Source: netip.AddrPortFrom(src, sp), Dst: netip.AddrPortFrom(dst, dp)}, nil
}

func parsePort(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, errors.New("bad port")
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(n), err
}

func readV2(r *bufio.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Header{}, err
	}
	if !bytes.Equal(fixed[:12], v2Signature) {
		return Header{}, ErrNoHeader
	}
	if fixed[12]>>4 != 2 {
		return Header{}, fmt.Errorf("proxyproto: v2 version %d", fixed[12]>>4)
	}
	body := make([]byte, binary.BigEndian.Uint16(fixed[14:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, err
	}
	h := Header{Version: 2}
	switch fixed[12] & 0xf {
	case 0:
		h.Local = true
		return h, nil
	case 1:
	default:
		return Header{}, fmt.Errorf("proxyproto: v2 command %d", fixed[12]&0xf)
	}
	switch fixed[13] {
	case 0x11:
		if len(body) < 12 {
			return Header{}, errors.New("proxyproto: short v2 IPv4 block")
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
	case 0x21:
		if len(body) < 36 {
			return Header{}, errors.New("proxyproto: short v2 IPv6 block")
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:]))
	case 0x00:
		h.Local = true
	default:
		return Header{}, fmt.Errorf("proxyproto: v2 family/transport 0x%02x not supported", fixed[13])
	}
	return h, nil
}
