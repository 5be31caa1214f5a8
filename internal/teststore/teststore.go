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
	return open(t, dir, pool, nil, tweak)
}

// Over is New with the backend passed through wrap first, for tests that count or
// fail the backend's calls.
func Over(t testing.TB, pool string, wrap func(store.Backend) store.Backend, tweak ...func(*store.Options)) *store.DB {
	t.Helper()
	return open(t, t.TempDir(), pool, wrap, tweak)
}

func open(t testing.TB, dir, pool string, wrap func(store.Backend) store.Backend, tweak []func(*store.Options)) *store.DB {
	t.Helper()
	bk, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b store.Backend = bk
	if wrap != nil {
		b = wrap(bk)
	}
	o := store.Options{FrontendPool: []netip.Prefix{netip.MustParsePrefix(pool)}}
	for _, f := range tweak {
		f(&o)
	}
	db := store.New(b, o)
	t.Cleanup(func() { db.Close() })
	return db
}
