package ha

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftTable names the nftables table (one in family ip, one in ip6) that carries a
// handover's rules. It exists only while a handover is under way.
const nftTable = "nodebalancer-handover"

// drainRecord is what a host that handed the addresses over publishes in etcd while
// its connections drain: where the holder is to send the packets of those
// connections (its address on the frontend link; for IPv6 its link-local one).
type drainRecord struct {
	Host  string   `json:"host"`
	V4    string   `json:"v4,omitempty"`
	V6    string   `json:"v6,omitempty"`
	Addrs []string `json:"addrs"`
	rev   int64    // the key's create revision: the newest drain wins an address
}

// forwarder keeps the handover table in step with what this host does: a draining
// host drops new connections' SYNs for the addresses it handed over (they are
// retransmitted and reach the new holder: the listeners here are closing, and a
// closed one would answer with a reset); a holder (or a draining host, for drains
// older than its own) sends every packet for a drained address that is not a SYN
// and belongs to no connection of its own (conntrack state new: it never saw the
// connection's handshake) to the draining host, which has the socket, and drops its
// own copy, which it would answer with a reset.
//
// The copy goes out with nftables' dup (as iptables' TEE) to the draining host's
// address on the link, the packet unchanged (destination the frontend address), so
// nothing needs ip_forward, policy routes or NAT, and the draining host answers the
// client directly. Every change rewrites the whole table in one transaction.
type forwarder struct {
	iface   string
	ifindex uint32
	log     *slog.Logger

	mu      sync.Mutex
	own     []netip.Addr
	targets []drainRecord
	// before, when not 0, is the revision of this host's own drain record: it
	// forwards only to drains older than its own (the ones it forwarded to as
	// holder). A newer one is the next holder's business; this host's conntrack
	// need not know its own connections (it may have held without forwarding), so
	// it could take them for the newer drain's.
	before int64
	active bool // the table may exist: clear deletes it
}

// setBefore makes this host forward only to drains older than revision rev (its own
// drain record's) from now on.
func (f *forwarder) setBefore(rev int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.before = rev
	var keep []drainRecord
	for _, r := range f.targets {
		if r.rev < rev {
			keep = append(keep, r)
		}
	}
	f.targets = keep
	return f.apply()
}

// setOwn records the addresses this host drains (nil: none) and applies.
func (f *forwarder) setOwn(a []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.own = slices.Clone(a)
	return f.apply()
}

// setTargets records the other hosts draining (newest first) and applies.
func (f *forwarder) setTargets(recs []drainRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.before != 0 {
		recs = slices.DeleteFunc(slices.Clone(recs), func(r drainRecord) bool { return r.rev >= f.before })
	}
	if slices.EqualFunc(recs, f.targets, sameRecord) {
		return nil
	}
	f.targets = recs
	err := f.apply()
	if err == nil {
		f.log.Info("handover forwarding", "draining_hosts", hostsOf(recs), "to", targetsOf(recs))
	}
	return err
}

func sameRecord(a, b drainRecord) bool {
	return a.Host == b.Host && a.V4 == b.V4 && a.V6 == b.V6 && a.rev == b.rev && slices.Equal(a.Addrs, b.Addrs)
}

// clear forgets everything and deletes the table.
func (f *forwarder) clear() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.own, f.targets, f.before = nil, nil, 0
	return f.apply()
}

// apply writes the table for what f holds now (under f.mu).
func (f *forwarder) apply() error {
	if !f.active && len(f.own) == 0 && len(f.targets) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	rules := 0
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		is4 := fam == nftables.TableFamilyIPv4
		t := &nftables.Table{Name: nftTable, Family: fam}
		// Add, delete, add: one transaction replaces whatever was there (the first
		// add makes the delete succeed when there was nothing).
		c.AddTable(t)
		c.DelTable(t)
		own := familyOf(f.own, is4)
		// Each drained address goes to the newest drain that lists it: that host
		// forwards what is not its own to the older one in turn.
		var fwd []struct {
			to    netip.Addr
			addrs []netip.Addr
		}
		// A draining host forwards to the older drains the same addresses it drains
		// itself: its own connections are established in its conntrack (it
		// forwarded from its takeover on, so it tracked them from their SYN), the
		// older host's are new to it.
		taken := map[netip.Addr]bool{}
		for _, r := range f.targets {
			to, err := netip.ParseAddr(map[bool]string{true: r.V4, false: r.V6}[is4])
			if err != nil {
				continue // no address of this family on the link: nothing to forward to
			}
			var as []netip.Addr
			for _, s := range r.Addrs {
				if a, err := netip.ParseAddr(s); err == nil && a.Is4() == is4 && !taken[a] {
					taken[a] = true
					as = append(as, a)
				}
			}
			if len(as) > 0 {
				fwd = append(fwd, struct {
					to    netip.Addr
					addrs []netip.Addr
				}{to, as})
			}
		}
		if len(own) == 0 && len(fwd) == 0 {
			continue
		}
		c.AddTable(t)
		ch := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		if len(own) > 0 {
			set, err := addrSet(c, t, own)
			if err != nil {
				return err
			}
			// tcp, to a drained address, flags SYN without ACK: drop.
			e := append(tcpTo(is4, set), flags(tcpSYN|tcpACK, tcpSYN)...)
			e = append(e, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
			rules++
		}
		for _, fw := range fwd {
			set, err := addrSet(c, t, fw.addrs)
			if err != nil {
				return err
			}
			// tcp, to a drained address, no SYN, conntrack state new: dup to the
			// draining host through the frontend interface, then drop.
			e := append(tcpTo(is4, set), flags(tcpSYN, 0)...)
			e = append(e,
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
				&expr.Counter{},
				&expr.Immediate{Register: 1, Data: fw.to.AsSlice()},
				&expr.Immediate{Register: 2, Data: binaryutil.NativeEndian.PutUint32(f.ifindex)},
				&expr.Dup{RegAddr: 1, RegDev: 2, IsRegDevSet: true},
				&expr.Verdict{Kind: expr.VerdictDrop})
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
			rules++
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", nftTable, err)
	}
	f.active = rules > 0
	return nil
}

func familyOf(as []netip.Addr, is4 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range as {
		if a.Is4() == is4 {
			out = append(out, a)
		}
	}
	return out
}

// addrSet adds an anonymous constant set of addresses to the batch.
func addrSet(c *nftables.Conn, t *nftables.Table, as []netip.Addr) (*nftables.Set, error) {
	kt := nftables.TypeIPAddr
	if !as[0].Is4() {
		kt = nftables.TypeIP6Addr
	}
	s := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: kt}
	elems := make([]nftables.SetElement, len(as))
	for i, a := range as {
		elems[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	if err := c.AddSet(s, elems); err != nil {
		return nil, fmt.Errorf("nftables set: %w", err)
	}
	return s, nil
}

// tcpTo matches tcp packets whose destination is in set.
func tcpTo(is4 bool, set *nftables.Set) []expr.Any {
	off, n := uint32(16), uint32(4) // IPv4 destination
	if !is4 {
		off, n = 24, 16
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}

// The tcp flags byte's bits (offset 13 of the tcp header).
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// flags matches the tcp flags byte: flags & mask == value.
func flags(mask, value byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{value}},
	}
}

// removeTable deletes the handover table in both families (left by a run that was
// killed); it is not an error when there is none.
func removeTable() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Name: nftTable, Family: fam}
		c.AddTable(t)
		c.DelTable(t)
	}
	return c.Flush()
}

// arpSysctls makes sure iface answers ARP only for addresses on iface itself
// (arp_ignore 1) and never names an address of another interface as the sender of
// its ARP requests (arp_announce 2): a draining host keeps the addresses it handed
// over on lo, and must not answer ARP for them nor announce them. It raises the
// interface's values when needed (the effective value is the larger of all's and
// the interface's) and says what it did; an error means they are too low and could
// not be raised.
func arpSysctls(iface string, log *slog.Logger) error {
	for _, s := range []struct {
		name string
		want int
	}{{"arp_ignore", 1}, {"arp_announce", 2}} {
		all, err1 := readSysctl("all", s.name)
		dev, err2 := readSysctl(iface, s.name)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if max(all, dev) >= s.want {
			continue
		}
		p := "/proc/sys/net/ipv4/conf/" + iface + "/" + s.name
		if err := os.WriteFile(p, []byte(strconv.Itoa(s.want)), 0); err != nil {
			return fmt.Errorf("net.ipv4.conf.%s.%s is %d, %d is needed, and it could not be set: %w", iface, s.name, dev, s.want, err)
		}
		log.Info("set a sysctl the handover needs", "sysctl", "net.ipv4.conf."+iface+"."+s.name, "value", s.want)
	}
	// With tcp_loose 0 conntrack calls a connection picked up mid-stream invalid,
	// not new: the holder would not recognise the drained connections' packets.
	if v, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_tcp_loose"); err == nil && strings.TrimSpace(string(v)) == "0" {
		return errors.New("net.netfilter.nf_conntrack_tcp_loose is 0; the handover needs 1 (the default)")
	}
	return nil
}

func readSysctl(iface, name string) (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + iface + "/" + name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
