//go:build !linux

package dataplane

import (
	"io"
	"net"
)

// spliceCopy copies src to dst until src reaches EOF (nil error) or either side fails,
// adding the bytes to every counter each chunk and at the end. Outside Linux it is a
// plain buffered copy, which marks act only once per chunk (4 MiB): a slow transfer
// may look idle.
func spliceCopy(dst, src *net.TCPConn, act *activity, counters ...adder) (int64, error) {
	var total int64
	for {
		n, err := io.CopyN(dst, src, chunk)
		if n > 0 {
			act.mark()
			total += n
			for _, c := range counters {
				c.Add(uint64(n))
			}
		}
		switch {
		case err == io.EOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}
