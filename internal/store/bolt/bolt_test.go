package bolt_test

import (
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/store/bolt"
	"github.com/nodebalancer/nodebalancer/internal/store/storetest"
)

// One process owns a bbolt file, so both "hosts" of the suite are the same Backend.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Backend, store.Backend) {
		b, err := bolt.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b, b
	})
}
