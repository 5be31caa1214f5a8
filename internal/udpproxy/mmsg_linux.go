package udpproxy

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batch is the number of datagrams one recvmmsg or sendmmsg moves.
const batch = 16

// maxDatagram is a slot's size: the largest UDP payload (65,507 bytes over
// IPv4, 65,527 over IPv6) fits whole.
const maxDatagram = 1 << 16

// mmsghdr is the kernel's struct mmsghdr; Go pads it as C does on every
// architecture.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batchBufs are the preallocated headers, address slots and buffers of one
// loop's batches.
type batchBufs struct {
	hs    [batch]mmsghdr
	iov   [batch]unix.Iovec
	names [batch]unix.RawSockaddrInet6
	bufs  []byte // batch × maxDatagram
}

func newBatchBufs(withNames bool) *batchBufs {
	b := &batchBufs{bufs: make([]byte, batch*maxDatagram)}
	for i := range b.hs {
		b.iov[i].Base = &b.bufs[i*maxDatagram]
		b.iov[i].SetLen(maxDatagram)
		h := &b.hs[i].hdr
		h.Iov = &b.iov[i]
		h.SetIovlen(1)
		if withNames {
			h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		}
	}
	return b
}

// recvmmsg reads up to len(hs) datagrams from fd without blocking. Calls that cannot
// block go through RawSyscall: they need not tell the scheduler they are leaving.
func recvmmsg(fd uintptr, hs []mmsghdr) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// sendmmsg sends up to len(hs) datagrams on fd without blocking.
func sendmmsg(fd uintptr, hs []mmsghdr) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// clientAddr is a client's address, and the same address as the sockaddr
// sendmmsg sends its replies to.
type clientAddr struct {
	ap    netip.AddrPort
	sa    unix.RawSockaddrInet6 // or a RawSockaddrInet4 in its first bytes
	salen uint32
}

// parseName decodes the source address recvmmsg wrote, allocation-free.
func parseName(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), binary.BigEndian.Uint16(p[:]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr).Unmap()
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(p[:]))
	}
	return netip.AddrPort{}
}

// newClientAddr returns ap with the sockaddr of the frontend socket's family.
func newClientAddr(ap netip.AddrPort, v6socket bool) clientAddr {
	c := clientAddr{ap: ap}
	if !v6socket && ap.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = ap.Addr().As4()
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		c.salen = unix.SizeofSockaddrInet4
		return c
	}
	c.sa.Family = unix.AF_INET6
	c.sa.Addr = ap.Addr().As16()
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&c.sa.Port))[:], ap.Port())
	c.salen = unix.SizeofSockaddrInet6
	return c
}

// dialNode opens a non-blocking UDP socket connected to addr, bound to
// source when it is valid. Connected, it receives only the node's datagrams
// and learns of an ICMP port-unreachable as ECONNREFUSED.
func dialNode(addr netip.AddrPort, source netip.Addr) (int, error) {
	family := unix.AF_INET
	if !addr.Addr().Is4() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if source.IsValid() && source.Is4() == addr.Addr().Is4() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(source, 0))); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.Connect(fd, sockaddr(addr)); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func sockaddr(a netip.AddrPort) unix.Sockaddr {
	if a.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}
	}
	return &unix.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}
}
