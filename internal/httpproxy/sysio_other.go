//go:build !linux || race

package httpproxy

import "syscall"

// sysRead and sysWrite are one read or write of a non-blocking socket: raw on Linux
// (sysio_linux.go), but not for the race detector, which learns from syscall.Read and
// syscall.Write that a socket's bytes were written before they are read.
func sysRead(fd int, b []byte) (int, error) {
	n, err := syscall.Read(fd, b)
	return max(n, 0), err
}

func sysWrite(fd int, b []byte) (int, error) {
	n, err := syscall.Write(fd, b)
	return max(n, 0), err
}
