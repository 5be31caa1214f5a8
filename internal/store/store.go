// Package store keeps nodebalancer's desired state — NodeBalancers, Configs, Nodes and
// access tokens — and tells watchers when it changed. Every write is one transaction on
// a small key-value Backend (bbolt embedded, etcd shared); the consistency rules that
// span entities (unique labels and ports, frontend address allocation, cascading
// deletes, rebuild) are written once here, above any Backend.
//
// Readers follow changes through Backend.Watch: each Change names the revision
// reached and the keys of NodeBalancers, configs and nodes written since, so a
// Mirror re-reads only those. A Backend publishes its commits to a Feed, which does
// the fan-out, coalescing and Reset. The bbolt backend publishes the keys each
// Update wrote; the etcd backend (store/etcd) publishes what its etcd watch reports
// (each event's key under the state kinds and its mod revision; a compaction is a
// Reset), and implements Tx as reads at one etcd revision and writes committed in
// one etcd transaction guarded by what was read.
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// ErrNotFound is returned when an addressed object does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps the errors of a Backend that cannot reach its storage (an
// etcd cluster without quorum or out of reach): the request may succeed later. A
// write that failed before its commit was sent wrote nothing; one whose commit
// went unconfirmed says so. The API answers 503.
var ErrUnavailable = errors.New("store unavailable")

// ErrConflict is returned when an optimistic transaction kept conflicting with
// concurrent writers past its retry bound; nothing was written.
var ErrConflict = errors.New("store: too many conflicting concurrent writes")

// Kind names a collection in a Backend.
type Kind string

// The collections nodebalancer keeps.
const (
	KindNodeBalancer Kind = "nodebalancers"
	KindConfig       Kind = "configs" // keyed by (nodebalancer id, config id)
	KindNode         Kind = "nodes"   // keyed by (config id, node id)
	KindToken        Kind = "tokens"
	KindBlob         Kind = "blobs"          // small named values owned by other packages (stats)
	KindLabel        Kind = "labels"         // index: NodeBalancer label → id
	KindAddress      Kind = "addresses"      // index: NodeBalancer ipv4 (4 bytes) → id; allocation cursor
	KindNodeAddr     Kind = "node_addresses" // index: node ip (16 bytes), port, node key → empty
	KindReservedIP   Kind = "reserved_ips"   // reserved frontend addresses, keyed by the address's 4 bytes (ipKey)
	KindFirewall     Kind = "firewalls"
	KindFwDevice     Kind = "firewall_devices" // keyed by (firewall id, device id)
)

// Kinds lists every collection, for backends that create them up front.
var Kinds = []Kind{KindNodeBalancer, KindConfig, KindNode, KindToken, KindBlob, KindLabel, KindAddress, KindNodeAddr, KindReservedIP, KindFirewall, KindFwDevice}

// State reports whether k holds desired state: writes to it advance the revision
// and appear in the change feed. Tokens, blobs, indexes and reserved addresses do
// neither, so they never wake the data plane.
func (k Kind) State() bool {
	return k == KindNodeBalancer || k == KindConfig || k == KindNode || k == KindFirewall || k == KindFwDevice
}

// Tx is one transaction on a Backend. Keys are compared bytewise; Scan visits keys in
// order.
type Tx interface {
	// Get returns the value at key, or nil when there is none.
	Get(kind Kind, key []byte) ([]byte, error)
	// Put stores value at key (Update transactions only).
	Put(kind Kind, key, value []byte) error
	// Delete removes key (Update transactions only); a missing key is not an error.
	Delete(kind Kind, key []byte) error
	// Scan calls fn for every key beginning with prefix, in key order.
	Scan(kind Kind, prefix []byte, fn func(key, value []byte) error) error
	// NextID returns a new id for kind, never handed out before (Update only).
	NextID(kind Kind) (int, error)
	// Revision is the state's revision as this transaction reads it.
	Revision() (uint64, error)
}

// Backend is the storage nodebalancer runs on.
type Backend interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed when fn returns nil and
	// discarded otherwise. A committed Update advances the revision. A backend with
	// optimistic transactions may run fn more than once (each on a fresh Tx): fn
	// must start from its inputs every time.
	Update(fn func(Tx) error) error
	// Revision is the state's current revision: it grows with every committed
	// Update that changed state (bbolt counts exactly those; etcd's revision also
	// grows with other writes, so revisions need not be consecutive).
	Revision() (uint64, error)
	// Watch sends, until ctx ends, what changed after revision after: the revision
	// reached and the keys of state kinds written or deleted (see Change and Feed,
	// which backends use to serve it). The channel closes when ctx ends.
	Watch(ctx context.Context, after uint64) <-chan Change
	// Close releases the backend.
	Close() error
}

// StageFunc is shown each write of state before it commits, by a Backend that
// offers it (the bbolt one's SetStage): tx reads the state as the write leaves it,
// c.Revision is the revision it will commit as and c.Keys the state keys it wrote.
// It runs inside the write, so writes are shown one at a time and in commit order.
// It returns nil, or a function told once the commit ended whether it succeeded.
type StageFunc func(tx Tx, c Change) (done func(committed bool))

// Key encodes ids as a key whose byte order is the ids' numeric order.
func Key(ids ...int) []byte {
	b := make([]byte, 8*len(ids))
	for i, id := range ids {
		binary.BigEndian.PutUint64(b[8*i:], uint64(id))
	}
	return b
}

// lastID returns the final id of a key made by Key.
func lastID(key []byte) int {
	if len(key) < 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(key[len(key)-8:]))
}

func get[T any](tx Tx, kind Kind, key []byte) (T, error) {
	var v T
	b, err := tx.Get(kind, key)
	if err != nil {
		return v, err
	}
	if b == nil {
		return v, ErrNotFound
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode %s %x: %w", kind, key, err)
	}
	fillStoredDefaults(&v)
	return v, nil
}

// fillStoredDefaults gives a decoded config the defaults of fields added after it was
// stored.
func fillStoredDefaults(v any) {
	if c, ok := v.(*model.Config); ok {
		c.FillStoredDefaults()
	}
}

func put(tx Tx, kind Kind, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	return tx.Put(kind, key, b)
}

func scan[T any](tx Tx, kind Kind, prefix []byte) ([]T, error) {
	var out []T
	err := tx.Scan(kind, prefix, func(k, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode %s %x: %w", kind, k, err)
		}
		fillStoredDefaults(&v)
		out = append(out, v)
		return nil
	})
	return out, err
}
