//go:build linux

package dataplane

// The system calls of the tcp engine, made without Go's net package: on non-blocking
// descriptors they never wait, so they are made raw (without telling the scheduler a
// call may block, which costs two runtime transitions per call on every read and
// write of every session), and without allocating.

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// closeReset closes a socket with a reset (SO_LINGER 0): a client refused or dropped.
func closeReset(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	closeFD(fd)
}

// accept4 accepts a client of the listening socket lfd: non-blocking, close-on-exec,
// with its address (no getpeername, no allocation).
func accept4(lfd int) (int, netip.AddrPort, syscall.Errno) {
	var sa unix.RawSockaddrAny
	salen := uint32(unsafe.Sizeof(sa))
	fd, _, errno := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&sa)),
		uintptr(unsafe.Pointer(&salen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(fd), sockaddrAddrPort(&sa), 0
}

func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(b[0])<<8|uint16(b[1]))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), uint16(b[0])<<8|uint16(b[1]))
	}
	return netip.AddrPort{}
}

// putSockaddr writes a as a socket address into sa and returns its length.
func putSockaddr(sa *unix.RawSockaddrAny, a netip.AddrPort) uint32 {
	if a.Addr().Is4() {
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p.Family = unix.AF_INET
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		b[0], b[1] = byte(a.Port()>>8), byte(a.Port())
		p.Addr = a.Addr().As4()
		return unix.SizeofSockaddrInet4
	}
	p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
	p.Family = unix.AF_INET6
	b := (*[2]byte)(unsafe.Pointer(&p.Port))
	b[0], b[1] = byte(a.Port()>>8), byte(a.Port())
	p.Addr = a.Addr().As16()
	return unix.SizeofSockaddrInet6
}

func read(fd int, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

func write(fd int, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// writeLast writes b, the last bytes of a stream whose end (shutdown or close) is
// written right after, with MSG_MORE: the kernel holds a segment it could fill
// further, and the FIN that follows goes in it, one packet (and one wake-up of the
// reader) less per direction that ends so. What the socket cannot take is returned
// as by write; the shutdown or close that always follows pushes what is held.
func writeLast(fd int, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_MORE|unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// epollWait0 returns the events ready in epfd without waiting.
func epollWait0(epfd int, evs []unix.EpollEvent) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// epollWaitFor waits up to d nanoseconds for events of epfd (epoll_pwait2, Linux 5.11;
// ENOSYS before), raw: the thread waits in
// the kernel holding its P, the scheduler is not told (the loop's own wait, see
// loop.serve). A signal (the runtime's preemption, a GC stop) ends it with EINTR.
func epollWaitFor(epfd int, evs []unix.EpollEvent, d int64) (int, syscall.Errno) {
	ts := unix.NsecToTimespec(d)
	n, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

func epollDel(epfd, fd int) syscall.Errno {
	_, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_DEL, uintptr(fd), 0, 0, 0)
	return errno
}

func epollAdd(epfd, fd int, ev *unix.EpollEvent) syscall.Errno {
	_, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errno
}

func closeFD(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }

func shutdownWrite(fd int) { syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), syscall.SHUT_WR, 0) }

func setNoDelay(fd int) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// rawSplice moves up to max bytes from in to out without blocking.
func rawSplice(in, out, max int) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(max), spliceNonblock|spliceMove)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
