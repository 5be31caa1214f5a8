package health

import (
	"bytes"
	"io"
	"regexp"
	"testing"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzMatchBody checks that matching a check_body expression against any
// body never panics, reads at most the limit, and judges exactly the first
// limit bytes.
func FuzzMatchBody(f *testing.F) {
	f.Add(`"status":\s*"ok"`, []byte(`{"status": "ok"}`), 64)
	f.Add(`^OK$`, []byte("OK"), 2)
	f.Add(`a{1000}`, bytes.Repeat([]byte("a"), 1500), 1024)
	f.Add(`(?i)healthy`, []byte("\x00\xffHEALTHY\xc3"), 5)
	f.Add(`.*`, []byte{}, 0)
	f.Add(`\bdown\b`, []byte("up and down"), 1<<16)
	f.Fuzz(func(t *testing.T, pattern string, body []byte, limit int) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return // the API refuses it
		}
		limit = max(0, limit%(DefaultMaxBodyBytes+1))
		r := &countingReader{r: bytes.NewReader(body)}
		got, err := matchBody(re, r, limit)
		if err != nil {
			t.Fatalf("matchBody: %v", err)
		}
		if r.n > limit {
			t.Fatalf("read %d bytes, limit %d", r.n, limit)
		}
		if want := re.Match(body[:min(len(body), limit)]); got != want {
			t.Fatalf("match %v, want %v on the first %d bytes", got, want, limit)
		}
	})
}
