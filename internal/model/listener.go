package model

import (
	"net/netip"
	"slices"
	"time"
)

// ListenerState is whether a config's frontend listener is open on this host.
type ListenerState string

// Listener states.
const (
	// ListenerOpen: the config accepts clients on its NodeBalancer's ipv4:port.
	ListenerOpen ListenerState = "open"
	// ListenerFailed: the port could not be bound (or the config not served); the
	// data plane retries.
	ListenerFailed ListenerState = "failed"
	// ListenerPending: the data plane has not applied the config yet.
	ListenerPending ListenerState = "pending"
)

// ListenerStatus is the state of a config's listener on this host. It is this
// server's addition to Linode's API: the config's read-only "listener" field.
type ListenerStatus struct {
	State ListenerState
	// Address is the NodeBalancer's ipv4:port the config listens on.
	Address string
	// Error says why a failed listener is not open; Since is when it first failed
	// and Attempts how many times binding was tried since.
	Error    string
	Since    time.Time
	Attempts int
}

// Listening is a set of addresses this server accepts connections on. A node must
// not point at one of them: it would publish the API or /metrics through a
// NodeBalancer, or loop a frontend into itself.
type Listening struct {
	// Addrs are the bound addresses. An unspecified ip (0.0.0.0 or ::) listens on
	// every address of the host.
	Addrs []netip.AddrPort
	// Local are this host's own addresses, which a wildcard listener answers on
	// besides loopback.
	Local []netip.Addr
}

// Reaches returns the listener a connection to a would reach, if any. A wildcard
// listener is reached through loopback, any of Local, or an unspecified address
// (which Linux connects to the host itself); a specific one only through its own ip.
func (l Listening) Reaches(a netip.AddrPort) (netip.AddrPort, bool) {
	ip := a.Addr().Unmap()
	for _, x := range l.Addrs {
		if x.Port() != a.Port() {
			continue
		}
		xip := x.Addr().Unmap()
		local := ip.IsLoopback() || ip.IsUnspecified() || slices.Contains(l.Local, ip)
		if xip == ip || (xip.IsUnspecified() && local) || (ip.IsUnspecified() && (xip.IsLoopback() || slices.Contains(l.Local, xip))) {
			return x, true
		}
	}
	return netip.AddrPort{}, false
}
