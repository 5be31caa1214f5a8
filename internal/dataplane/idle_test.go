package dataplane

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// TestTCPIdleTimeoutEndsSilentSessions: with a tcp idle timeout, a session in which
// bytes keep moving lives on past it, and one that falls silent is ended (both sides
// closed) after between one and 1.25 times the timeout.
func TestTCPIdleTimeoutEndsSilentSessions(t *testing.T) {
	for _, eng := range []string{TCPEngineEpoll, TCPEngineGoroutine} {
		t.Run(eng, func(t *testing.T) { tcpIdleTimeoutEndsSilentSessionsOn(t, eng) })
	}
}

func tcpIdleTimeoutEndsSilentSessionsOn(t *testing.T, eng string) {
	const timeout = 400 * time.Millisecond
	e := newEnv(t, "127.0.66.0/24", func(o *Options) { o.TCPEngine = eng })
	e.plane.opts.Timeouts.TCPIdle = timeout
	nodeEnded := make(chan struct{}, 1)
	echo := testnet.ServeConns(t, "127.0.67.2:0", func(c net.Conn) {
		io.Copy(c, c)
		nodeEnded <- struct{}{}
	})
	nb := e.create(config(model.ProtocolTCP, 9000, node("echo", echo.Addr().String(), 50)))
	e.settle(1)
	select { // the readiness probe's session
	case <-nodeEnded:
	case <-time.After(2 * time.Second):
	}
	c, err := net.Dial("tcp", nb.IPv4+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	var silent time.Time // the last byte of the session
	for start := time.Now(); time.Since(start) < 3*timeout; time.Sleep(timeout / 4) {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatalf("a busy session was ended: %v", err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("a busy session was ended: %v", err)
		}
		silent = time.Now()
	}
	_, err = c.Read(b[:])
	took := time.Since(silent)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a silent session was not ended")
	}
	if took < timeout*9/10 || took > timeout*5/4+300*time.Millisecond {
		t.Errorf("a silent session ended after %v, want %v to %v", took, timeout, timeout*5/4)
	}
	select {
	case <-nodeEnded:
	case <-time.After(2 * time.Second):
		t.Error("the node's side of the silent session stayed open")
	}
}
