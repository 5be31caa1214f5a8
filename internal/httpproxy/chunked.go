package httpproxy

// Hot path: the chunked-framing scanner runs over every byte of chunk-size lines and
// trailers (never over chunk data, which it skips by count). It keeps no buffer of its
// own, so bodies stream through in whatever pieces the socket delivers.

// Limits on the parts of a chunked body that are not data.
const (
	maxChunkLine     = 4096     // a chunk-size line with its extensions
	maxChunkDigits   = 16       // hex digits of a chunk size, leading zeros included
	maxTrailerBytes  = 16 << 10 // the whole trailer section
	maxChunkSizeBits = 4*15 + 3 // sizes stay below 2^63
)

type chunkState uint8

const (
	csSizeStart      chunkState = iota // first hex digit of a chunk size
	csSize                             // more hex digits, or the end of the size
	csExtBWS                           // whitespace before ';'
	csExtNameStart                     // whitespace, then an extension name
	csExtName                          // in an extension name
	csExtAfterName                     // whitespace after a name, before '=' or ';'
	csExtValStart                      // whitespace, then a token or quoted value
	csExtVal                           // in a token value
	csExtQuoted                        // in a quoted value
	csExtQuotedEsc                     // after a backslash in a quoted value
	csExtAfterQuoted                   // right after the closing quote
	csSizeLF                           // LF ending the size line
	csData                             // chunk data
	csDataCR                           // CR after chunk data
	csDataLF                           // LF after chunk data
	csTrailerStart                     // a trailer field line, or the final CRLF
	csTrailerName                      // in a trailer field name
	csTrailerValue                     // in a trailer field value
	csTrailerLF                        // LF ending a trailer field line
	csEndLF                            // LF ending the body
	csDone                             // the body is complete
)

// chunkScanner validates chunked framing (RFC 9112 section 7.1) incrementally. The zero
// value is ready for a new body.
type chunkScanner struct {
	state   chunkState
	size    int64 // size being read, then data bytes left in the chunk
	digits  int
	lineLen int
	trailer int
}

func (c *chunkScanner) reset() { *c = chunkScanner{} }

// done reports whether the whole body, through the final CRLF, has been scanned.
func (c *chunkScanner) done() bool { return c.state == csDone }

func hexVal(b byte) int64 {
	switch {
	case '0' <= b && b <= '9':
		return int64(b - '0')
	case 'a' <= b && b <= 'f':
		return int64(b-'a') + 10
	case 'A' <= b && b <= 'F':
		return int64(b-'A') + 10
	}
	return -1
}

func isQdtext(b byte) bool {
	return b == '\t' || b == ' ' || b == 0x21 || (b >= 0x23 && b <= 0x5b) || (b >= 0x5d && b <= 0x7e) || b >= 0x80
}

func isFieldVChar(b byte) bool { return b >= 0x20 && b != 0x7f || b == '\t' }

// next scans the start of p and returns the length n of its leading segment and whether
// that segment is chunk data (the payload) or framing (size lines, CRLFs, trailers).
// Passing both kinds through re-creates the body byte for byte; passing only data
// decodes it. n is 0 only with an error or once the body is done.
func (c *chunkScanner) next(p []byte) (n int, data bool, err error) {
	if c.state == csData {
		n := len(p)
		if int64(n) > c.size {
			n = int(c.size)
		}
		c.size -= int64(n)
		if c.size == 0 {
			c.state = csDataCR
		}
		return n, true, nil
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch c.state {
		case csSizeStart, csSize, csExtBWS, csExtNameStart, csExtName, csExtAfterName,
			csExtValStart, csExtVal, csExtQuoted, csExtQuotedEsc, csExtAfterQuoted:
			c.lineLen++
			if c.lineLen > maxChunkLine {
				return 0, false, errChunkLineTooLong
			}
		case csTrailerStart, csTrailerName, csTrailerValue, csTrailerLF, csEndLF:
			c.trailer++
			if c.trailer > maxTrailerBytes {
				return 0, false, errChunkLineTooLong
			}
		}
		switch c.state {
		case csSizeStart:
			v := hexVal(b)
			if v < 0 {
				return 0, false, errBadChunk
			}
			c.size, c.digits, c.state = v, 1, csSize
		case csSize:
			if v := hexVal(b); v >= 0 {
				c.digits++
				if c.digits > maxChunkDigits || c.size>>(maxChunkSizeBits-4) != 0 {
					return 0, false, errChunkTooLarge
				}
				c.size = c.size<<4 | v
				continue
			}
			switch b {
			case ';':
				c.state = csExtNameStart
			case ' ', '\t':
				c.state = csExtBWS
			case '\r':
				c.state = csSizeLF
			default:
				return 0, false, errBadChunk
			}
		case csExtBWS:
			switch b {
			case ' ', '\t':
			case ';':
				c.state = csExtNameStart
			default:
				return 0, false, errBadChunk
			}
		case csExtNameStart:
			switch {
			case b == ' ' || b == '\t':
			case tchar[b]:
				c.state = csExtName
			default:
				return 0, false, errBadChunk
			}
		case csExtName:
			switch {
			case tchar[b]:
			case b == ';':
				c.state = csExtNameStart
			case b == '=':
				c.state = csExtValStart
			case b == ' ' || b == '\t':
				c.state = csExtAfterName
			case b == '\r':
				c.state = csSizeLF
			default:
				return 0, false, errBadChunk
			}
		case csExtAfterName:
			switch b {
			case ' ', '\t':
			case '=':
				c.state = csExtValStart
			case ';':
				c.state = csExtNameStart
			default:
				return 0, false, errBadChunk
			}
		case csExtValStart:
			switch {
			case b == ' ' || b == '\t':
			case b == '"':
				c.state = csExtQuoted
			case tchar[b]:
				c.state = csExtVal
			default:
				return 0, false, errBadChunk
			}
		case csExtVal:
			switch {
			case tchar[b]:
			case b == ';':
				c.state = csExtNameStart
			case b == ' ' || b == '\t':
				c.state = csExtBWS
			case b == '\r':
				c.state = csSizeLF
			default:
				return 0, false, errBadChunk
			}
		case csExtQuoted:
			switch {
			case b == '"':
				c.state = csExtAfterQuoted
			case b == '\\':
				c.state = csExtQuotedEsc
			case isQdtext(b):
			default:
				return 0, false, errBadChunk
			}
		case csExtQuotedEsc:
			if b != '\t' && (b < 0x20 || b == 0x7f) {
				return 0, false, errBadChunk
			}
			c.state = csExtQuoted
		case csExtAfterQuoted:
			switch b {
			case ';':
				c.state = csExtNameStart
			case ' ', '\t':
				c.state = csExtBWS
			case '\r':
				c.state = csSizeLF
			default:
				return 0, false, errBadChunk
			}
		case csSizeLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			c.lineLen, c.digits = 0, 0
			if c.size == 0 {
				c.state = csTrailerStart
				continue
			}
			c.state = csData
			return i + 1, false, nil
		case csDataCR:
			if b != '\r' {
				return 0, false, errBadChunk
			}
			c.state = csDataLF
		case csDataLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			c.state = csSizeStart
		case csTrailerStart:
			switch {
			case b == '\r':
				c.state = csEndLF
			case tchar[b]:
				c.state = csTrailerName
			default:
				return 0, false, errBadChunk
			}
		case csTrailerName:
			switch {
			case tchar[b]:
			case b == ':':
				c.state = csTrailerValue
			default:
				return 0, false, errBadChunk
			}
		case csTrailerValue:
			switch {
			case b == '\r':
				c.state = csTrailerLF
			case isFieldVChar(b):
			default:
				return 0, false, errBadChunk
			}
		case csTrailerLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			c.state = csTrailerStart
		case csEndLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			c.state = csDone
			return i + 1, false, nil
		case csDone:
			return i, false, nil
		}
	}
	return len(p), false, nil
}
