// Package teststore opens the store tests run against: the embedded bolt store in a
// directory, closed when the test ends, so every package's tests build it one way.
package teststore

import (
	"net/netip"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
)

// New opens a fresh store in a new temporary directory whose NodeBalancers take their
// ipv4 from pool (a loopback CIDR such as "127.0.1.0/24"). tweak, when given, edits
// the store options first.
func New(t testing.TB, pool string, tweak ...func(*store.Options)) *store.DB {
	t.Helper()
	return Open(t, t.TempDir(), pool, tweak...)
}

// Open opens (or reopens) the store in dir, as New does. Closing it before the test
// ends, to reopen the directory, is allowed: a second Close does nothing.
func Open(t testing.TB, dir, pool string, tweak ...func(*store.Options)) *store.DB {
	t.Helper()
	b, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix(pool)}}
	for _, f := range tweak {
		f(&o)
	}
	db := store.New(b, o)
	t.Cleanup(func() { db.Close() })
	return db
}
