package dataplane

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// TestCloseEndsSessionsWaitingOnASilentNode: when the grace is over, Close ends every
// tcp session, also one whose client has finished sending and whose node keeps its
// connection open without a word (the copy left waits on the node, not the client).
func TestCloseEndsSessionsWaitingOnASilentNode(t *testing.T) {
	for _, eng := range []string{TCPEngineEpoll, TCPEngineGoroutine} {
		t.Run(eng, func(t *testing.T) { closeEndsSessionsWaitingOnASilentNodeOn(t, eng) })
	}
}

func closeEndsSessionsWaitingOnASilentNodeOn(t *testing.T, eng string) {
	e := newEnv(t, "127.0.69.0/24", func(o *Options) { o.TCPEngine = eng })
	silent := testnet.ServeConns(t, "127.0.70.2:0", func(c net.Conn) {
		io.Copy(io.Discard, c) // reads to the end, never answers, never closes
		time.Sleep(time.Minute)
	})
	nb := e.create(config(model.ProtocolTCP, 9000, node("silent", silent.Addr().String(), 50)))
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "request")
	c.(*net.TCPConn).CloseWrite()
	time.Sleep(100 * time.Millisecond)

	start := time.Now()
	closed := make(chan struct{})
	go func() { e.plane.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(e.plane.opts.Grace + 3*time.Second):
		t.Fatalf("Close still waiting %v after a %v grace", time.Since(start).Round(time.Millisecond), e.plane.opts.Grace)
	}
}
