package httpproxy

// Hot path: request and response bodies: how they are delimited, the request body
// streamer and the copy loop both directions use.

import (
	"errors"
	"io"
	"net"
	"time"
)

// bodyMode is how a request or response body is delimited on the wire it is read from.
type bodyMode uint8

const (
	bodyNone bodyMode = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// Errors of the request body streamer, telling whose fault the end was.
var (
	errClientBody  = errors.New("httpproxy: reading request body from client")
	errBackendBody = errors.New("httpproxy: writing request body to backend")
)

// Codes of cc.bodyFail: why the request body streamer stopped early.
const (
	bodyFailClient   = 1 + iota // reading from the client failed or timed out
	bodyFailBadChunk            // the client's chunked framing is malformed
	bodyFailBackend             // writing to the backend failed
)

// errBodyAborted is the body streamer's result when the exchange stopped it.
var errBodyAborted = errors.New("httpproxy: request body aborted")

// streamRequestBody copies the rest of the request body from the client to bc. It runs
// on its own goroutine while the exchange reads the response, so that an early response
// or "Expect: 100-continue" cannot deadlock; it reports its end on cc.bodyDone.
func (cc *clientConn) streamRequestBody(cfg *Config, bc *backendConn, mode bodyMode, remaining int64) {
	var result error
	defer func() {
		if p := recover(); p != nil {
			cc.s.logger.Error("httpproxy: internal error streaming request body", "panic", p)
			result = errClientBody
		}
		cc.bodyDone <- result
	}()
	t := &cfg.Timeouts
	n, srcErr, dstErr := copyBody(&cc.r, t.Client, bc.c, &bc.wdl, t.Backend, mode, remaining,
		&cc.reqCS, false, bc.c, t.BackendResponseHeader)
	cc.bodySent += n
	switch {
	case srcErr != nil && isChunkError(srcErr):
		result = errBadChunk
		cc.bodyFail.Store(bodyFailBadChunk)
	case srcErr != nil:
		result = errClientBody
		cc.bodyFail.Store(bodyFailClient)
	case dstErr != nil:
		// The backend closed or reset: the exchange's read sees that by itself, and may
		// still have a response (an early 413, say) to relay.
		result = errBackendBody
		cc.bodyFail.Store(bodyFailBackend)
		return
	default:
		return
	}
	// Wake the exchange, which may be waiting for a response that cannot come. bc is
	// still ours: the exchange does not release it before receiving on bodyDone.
	bc.c.SetReadDeadline(aLongTimeAgo)
}

func isChunkError(err error) bool {
	return err == errBadChunk || err == errChunkTooLarge || err == errChunkLineTooLong
}

// waitRequestBody waits briefly for the request body streamer to end and reports
// whether the body was sent whole. The brief wait covers a backend that answers as soon
// as the last byte arrives, before the streamer has noticed it is done.
func (cc *clientConn) waitRequestBody() bool {
	select {
	case err := <-cc.bodyDone:
		cc.bodyDone <- err // stopRequestBody collects it
		return err == nil
	default:
	}
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case err := <-cc.bodyDone:
		cc.bodyDone <- err
		return err == nil
	case <-t.C:
		return false
	}
}

// stopRequestBody ends the request body streamer and returns its result: nil when the
// body was sent whole, its own error when it failed, errBodyAborted when it was still
// running and had to be stopped.
func (cc *clientConn) stopRequestBody(bc *backendConn) error {
	var err error
	select {
	case err = <-cc.bodyDone:
	default:
		if cc.bodyFail.Load() != 0 {
			err = <-cc.bodyDone // failing on its own; about to report
			break
		}
		cc.c.SetReadDeadline(aLongTimeAgo)
		bc.c.SetWriteDeadline(aLongTimeAgo)
		if err = <-cc.bodyDone; err != nil {
			err = errBodyAborted
		}
	}
	cc.r.dl.forget()
	bc.wdl.forget()
	bc.r.dl.forget()
	return err
}

// copyBody streams a body from src to dst: exactly n bytes (bodyLength), a chunked body
// (validated; decoded when decode is set), or everything until src closes. When touch is
// set, each write also pushes touch's read deadline touchTO ahead, so that a long upload
// does not count against the backend's response-header timeout.
func copyBody(src *connReader, srcTO time.Duration, dst net.Conn, dstDL *deadline, dstTO time.Duration,
	mode bodyMode, n int64, cs *chunkScanner, decode bool, touch net.Conn, touchTO time.Duration) (written int64, srcErr, dstErr error) {
	for {
		if mode == bodyLength && n == 0 || mode == bodyChunked && cs.done() {
			return written, nil, nil
		}
		if src.n() == 0 {
			setReadDeadline(src.conn, &src.dl, time.Now(), srcTO)
			k, err := src.fill()
			if k == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return written, err, nil
			}
		}
		buf := src.buffered()
		var chunk []byte
		switch mode {
		case bodyLength:
			if int64(len(buf)) > n {
				buf = buf[:n]
			}
			chunk = buf
			n -= int64(len(buf))
		case bodyUntilClose:
			chunk = buf
		case bodyChunked:
			k := 0
			for k < len(buf) && !cs.done() {
				m, data, err := cs.next(buf[k:])
				if err != nil {
					return written, err, nil
				}
				if decode && data {
					// Decoding: only data segments go out; framing is dropped.
					if err := writeDL(dst, dstDL, dstTO, buf[k:k+m]); err != nil {
						return written, nil, err
					}
					written += int64(m)
				}
				k += m
			}
			if decode {
				src.consume(k)
				continue
			}
			chunk = buf[:k]
		}
		if err := writeDL(dst, dstDL, dstTO, chunk); err != nil {
			return written, nil, err
		}
		written += int64(len(chunk))
		src.consume(len(chunk))
		if touch != nil && touchTO > 0 {
			touch.SetReadDeadline(time.Now().Add(touchTO))
		}
	}
}

func writeDL(c net.Conn, dl *deadline, d time.Duration, b []byte) error {
	setWriteDeadline(c, dl, time.Now(), d)
	_, err := c.Write(b)
	return err
}
