package server

import (
	"context"
	"log/slog"

	"github.com/vishvananda/netlink"
)

// addrChanges returns a channel that receives a value whenever the kernel reports
// an address added to or removed from an interface, and is closed when the
// subscription ends (ctx done, or a netlink error: the caller's ticker goes on).
func addrChanges(ctx context.Context, log *slog.Logger) <-chan struct{} {
	updates := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(updates, ctx.Done(), netlink.AddrSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // not the socket closed at the end
				log.Warn("address change notices: an error (the addresses are re-read every 30 s anyway)", "err", err)
			}
		},
	}); err != nil {
		log.Warn("cannot follow address changes; re-reading this host's addresses every 30 s", "err", err)
		return nil
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for range updates { // closed by netlink when ctx ends or the socket fails
			select {
			case out <- struct{}{}:
			default: // one pending notice is enough: the reader re-reads everything
			}
		}
	}()
	return out
}
