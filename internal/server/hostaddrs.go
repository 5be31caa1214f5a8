package server

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"
)

// HostAddrsEvery is how often the host's addresses are re-read besides the
// kernel's change notices (Linux): the fallback where those are not available or
// were lost, and the only way elsewhere.
const HostAddrsEvery = 30 * time.Second

// hostAddrsSettle is how long a burst of change notices (an interface coming up
// brings several) is let settle before the addresses are read once.
const hostAddrsSettle = 50 * time.Millisecond

// hostAddrs returns this host's own addresses, sorted: the ones a wildcard listener
// answers on besides loopback.
func hostAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	var out []netip.Addr
	for _, a := range ifAddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), err
}

// followHostAddrs keeps the store's view of this host's addresses current until
// ctx ends, so that a node pointing at an address the host gained after the start
// (DHCP, a VIP, an interface brought up later) is refused like the others: it
// re-reads them when the kernel reports an address change (netlink, on Linux),
// and every `every` whatever happens. start is what New read; read reads them
// (hostAddrs); changes delivers the kernel's notices (addrChanges; nil for none).
func (s *Server) followHostAddrs(ctx context.Context, start []netip.Addr, every time.Duration,
	read func() ([]netip.Addr, error), changes <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	settle := time.NewTimer(0)
	<-settle.C
	defer settle.Stop()
	known := start
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				changes = nil // the ticker goes on alone
				continue
			}
			settle.Reset(hostAddrsSettle)
			continue
		case <-settle.C:
		case <-tick.C:
		}
		addrs, err := read()
		if err != nil {
			s.cfg.Log.Warn("cannot list this host's addresses; keeping the last list", "err", err)
			continue
		}
		if slices.Equal(addrs, known) {
			continue
		}
		s.db.SetLocal(addrs)
		s.cfg.Log.Info("this host's addresses changed: nodes may not point at the server through them",
			"added", fmtAddrs(missing(addrs, known)), "removed", fmtAddrs(missing(known, addrs)))
		known = addrs
	}
}

// missing returns the addresses of a that are not in b.
func missing(a, b []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func fmtAddrs(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
