//go:build !linux

package udpproxy

import (
	"errors"
	"net/netip"
	"sync/atomic"
)

type frontLoop struct{}
type nodeLoop struct{ frontDone atomic.Bool }
type clientAddr struct{ ap netip.AddrPort }

func (l *nodeLoop) wake() {}

// Listen needs Linux (recvmmsg, sendmmsg, epoll).
func Listen(addr netip.AddrPort, s *Snapshot, o Options) (*Proxy, error) {
	return nil, errors.New("udp configs need Linux")
}
