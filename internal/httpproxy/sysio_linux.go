//go:build linux && !race

package httpproxy

import (
	"syscall"
	"unsafe"
)

// sysRead and sysWrite are one read or write of a non-blocking socket, made raw:
// without entering the scheduler's system-call state. Such a call never waits, but on
// a machine whose CPUs are shared with other busy processes the kernel may deschedule
// the thread in the middle of it; a call in the system-call state that lasts two ticks
// of the runtime's monitor (20 µs and up) then has its P taken away and handed to
// another thread, and on return the goroutine finds no P and goes to the global run
// queue behind everything else: a thread wake-up and a wait that showed as the p99 of
// keep-alive traffic (bench/README.md, "Unpinned tail latency"). Held raw, the P stays
// with the goroutine and its other goroutines can still be stolen by idle Ps. The tcp
// engine makes its calls the same way (internal/dataplane/l4sys_linux.go).
//
// The race detector's build uses syscall.Read and syscall.Write instead
// (sysio_other.go): their annotations tell it that a write to a socket happens before
// the read of its bytes, which tests that hand data through sockets rely on.
//
// Errors are the bare syscall.Errno; n is 0 with an error.
func sysRead(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func sysWrite(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
