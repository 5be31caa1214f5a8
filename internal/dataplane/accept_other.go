//go:build !linux

package dataplane

// adoptRaw: clients are accepted raw on Linux only (accept_linux.go).
func (l *listener) adoptRaw() bool { return false }

func (l *listener) serveRaw(int) {}
