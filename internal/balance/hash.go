package balance

import (
	"encoding/binary"
	"net/netip"
)

// HashAddr returns a well-mixed 64-bit hash of a client address, to be passed
// as the key of Pick, PickExcluding and Choose. It is deterministic (the same
// address always gives the same key, on every host and across restarts, which
// is what the source algorithm needs), allocation-free and costs a few
// nanoseconds. An IPv4 address and its IPv4-mapped IPv6 form hash alike, and
// the IPv6 zone is ignored. It is not keyed: do not use it where an attacker
// choosing addresses could exploit collisions (StickyTable mixes in a seed of
// its own).
func HashAddr(a netip.Addr) uint64 {
	hi, lo := addrWords(a)
	return hashWords(hi, lo, 0)
}

// addrWords returns the 16-byte form of a as two words. IPv4 addresses come
// out in their IPv4-mapped form, so both spellings of one client agree.
func addrWords(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// hashWords mixes two words and a seed into one hash.
func hashWords(hi, lo, seed uint64) uint64 {
	return mix64(mix64(hi^seed^0x9e3779b97f4a7c15) ^ lo)
}

// mix64 is the SplitMix64 finalizer: a bijection with full avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
