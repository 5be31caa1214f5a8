package ha

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Announcements are sent this many times, this far apart: one lost frame does not
// leave a neighbour pointing at the old holder.
const (
	announceCount = 3
	announceGap   = 200 * time.Millisecond
)

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// announce tells the link that addrs are now at this interface's hardware address:
// a gratuitous ARP request (sender = target = the address) for IPv4, an unsolicited
// neighbour advertisement with the override flag to all nodes for IPv6. It sends
// nothing more once ctx ends: the holder ends it when it stops holding, so that an
// announcement of its own never follows the next holder's (which would point the
// clients back at a host that no longer has their connections).
func announce(ctx context.Context, iface string, addrs []netip.Addr, log *slog.Logger) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		log.Error("announce frontend addresses", "interface", iface, "err", err)
		return
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var ac *arp.Client
	if len(v4) > 0 {
		if ac, err = arp.Dial(ifi); err != nil {
			log.Error("gratuitous ARP", "interface", iface, "err", err)
		} else {
			defer ac.Close()
		}
	}
	var nc *ndp.Conn
	if len(v6) > 0 {
		if nc, _, err = ndp.Listen(ifi, linkLocal(ifi)); err != nil {
			log.Error("neighbour advertisement", "interface", iface, "err", err)
		} else {
			defer nc.Close()
		}
	}
	allNodes := netip.MustParseAddr("ff02::1")
	for i := range announceCount {
		if i > 0 {
			sleep(ctx, announceGap)
		}
		if ctx.Err() != nil {
			return
		}
		if ac != nil {
			for _, a := range v4 {
				p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, a, broadcast, a)
				if err == nil {
					err = ac.WriteTo(p, broadcast)
				}
				if err != nil {
					log.Error("gratuitous ARP", "addr", a.String(), "err", err)
				}
			}
		}
		if nc != nil {
			for _, a := range v6 {
				m := &ndp.NeighborAdvertisement{Override: true, TargetAddress: a,
					Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}}}
				if err := nc.WriteTo(m, nil, allNodes); err != nil {
					log.Error("neighbour advertisement", "addr", a.String(), "err", err)
				}
			}
		}
	}
}

// linkLocal is the link-local address of ifi to advertise from: one that finished
// duplicate address detection (a tentative one cannot be bound), else ndp's choice.
func linkLocal(ifi *net.Interface) ndp.Addr {
	link, err := netlink.LinkByIndex(ifi.Index)
	if err != nil {
		return ndp.LinkLocal
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return ndp.LinkLocal
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			return ndp.Addr(a.IP.String())
		}
	}
	return ndp.LinkLocal
}
