package store

// Blobs: small named values other packages keep in the store (stats, the cookie key).

import (
	"errors"
)

var errStop = errors.New("stop")

// ---- Blobs

// Blob returns the named blob, nil when absent.
func (db *DB) Blob(name string) (b []byte, err error) {
	err = db.b.View(func(tx Tx) error {
		v, err := tx.Get(KindBlob, []byte(name))
		b = append([]byte(nil), v...)
		if v == nil {
			b = nil
		}
		return err
	})
	return b, err
}

// PutBlob stores the named blob. Blobs are not desired state: writing one does not
// wake watchers.
func (db *DB) PutBlob(name string, b []byte) error {
	return db.b.Update(func(tx Tx) error { return tx.Put(KindBlob, []byte(name), b) })
}

// Blobs returns every blob whose name begins with prefix, by name.
func (db *DB) Blobs(prefix string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := db.b.View(func(tx Tx) error {
		return tx.Scan(KindBlob, []byte(prefix), func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// EnsureBlob returns the named blob, first storing make()'s value when the blob is
// absent or not valid by ok — in one transaction, so that hosts starting together
// on a shared store agree on one value.
func (db *DB) EnsureBlob(name string, ok func([]byte) bool, make func() ([]byte, error)) (b []byte, err error) {
	// Read first: every start asks, and a write transaction costs an fsync even
	// when it writes nothing.
	err = db.b.View(func(tx Tx) error {
		v, err := tx.Get(KindBlob, []byte(name))
		if err == nil && v != nil && ok(v) {
			b = append([]byte(nil), v...)
		}
		return err
	})
	if err != nil || b != nil {
		return b, err
	}
	err = db.b.Update(func(tx Tx) error {
		v, err := tx.Get(KindBlob, []byte(name))
		if err != nil {
			return err
		}
		if v != nil && ok(v) {
			b = append([]byte(nil), v...)
			return nil
		}
		if b, err = make(); err != nil {
			return err
		}
		return tx.Put(KindBlob, []byte(name), b)
	})
	return b, err
}
