package httpproxy

import (
	"net"
	"time"
)

// tunnelUpgrade relays the backend's 101 response and then copies bytes both ways
// until both sides have closed (or one fails or stays silent for the tunnel timeout).
// The connection is never reused afterwards.
func (cc *clientConn) tunnelUpgrade(cfg *Config, bc *backendConn, end int, res Result) (Result, bool) {
	res.Status, cc.status = 101, 101
	out := appendResponseHead(cc.out[:0], &cc.resp, &cc.req, frameNone, true, "", false)
	bc.r.consume(end)
	// Bytes the backend sent right after its head belong to the new protocol.
	out = append(out, bc.r.buffered()...)
	res.RespBytes += int64(bc.r.n())
	bc.r.consume(bc.r.n())
	cc.out = out
	if err := cc.write(cfg, out); err != nil {
		bc.close()
		res.Failure = FailClientAbort
		return res, false
	}
	to := cfg.Timeouts.Tunnel
	if cc.r.n() > 0 {
		if err := writeDL(bc.c, &bc.wdl, to, cc.r.buffered()); err != nil {
			bc.close()
			return res, false
		}
		res.ReqBytes += int64(cc.r.n())
		cc.r.consume(cc.r.n())
	}

	cc.mu.Lock()
	cc.tunnel = bc.c
	cc.mu.Unlock()
	if cc.stopping.Load() {
		cc.stop() // a stop that came before the tunnel was registered
	}

	up := make(chan int64, 1)
	go func() {
		var n int64
		defer func() {
			if p := recover(); p != nil {
				cc.s.logger.Error("httpproxy: internal error in tunnel", "panic", p)
			}
			up <- n
		}()
		n = pump(&cc.r, bc.c, &bc.wdl, to)
	}()
	down := pump(&bc.r, cc.c, &cc.wdl, to)
	res.ReqBytes += <-up
	res.RespBytes += down
	cc.sentResp += down

	cc.mu.Lock()
	cc.tunnel = nil
	cc.mu.Unlock()
	bc.close()
	return res, false
}

// pump copies src to dst until src ends, then half-closes dst so the other side sees
// the end too. A failure or a silence of `to` aborts both connections.
func pump(src *connReader, dst net.Conn, dstDL *deadline, to time.Duration) int64 {
	var n int64
	for {
		setReadDeadline(src.conn, &src.dl, time.Now(), to)
		k, err := src.fill()
		if k > 0 {
			if werr := writeDL(dst, dstDL, to, src.buffered()); werr != nil {
				err = werr
			} else {
				n += int64(k)
				src.consume(k)
				continue
			}
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && err != nil && isClosedByPeer(err) {
			cw.CloseWrite()
			return n
		}
		// Anything but a clean end from src ends the whole tunnel.
		src.conn.SetDeadline(aLongTimeAgo)
		dst.SetDeadline(aLongTimeAgo)
		return n
	}
}
