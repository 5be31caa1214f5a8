//go:build !linux

package dataplane

import "errors"

// engine is the epoll engine, Linux only: elsewhere tcp configs are served by
// goroutines (tcp.go).
type engine struct{}

// lsock is a listening socket of the engine (Linux only).
type lsock struct{}

func newEngine(*Plane, int) (*engine, error) {
	return nil, errors.New("dataplane: the epoll engine is Linux only")
}
func (e *engine) stop()                {}
func (e *engine) adopt(*listener) bool { return false }
func (e *engine) closeListener(*lsock) {}
func (e *engine) closeAll(*listener)   {}
func engineLoops() int                 { return 1 }
