package store

// Personal access tokens.

import (
	"errors"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Tokens returns every token in id order.
func (db *DB) Tokens() (out []model.Token, err error) {
	err = db.b.View(func(tx Tx) error {
		out, err = scan[model.Token](tx, KindToken, nil)
		return err
	})
	return out, err
}

// Token returns token id.
func (db *DB) Token(id int) (t model.Token, err error) {
	err = db.b.View(func(tx Tx) error {
		t, err = get[model.Token](tx, KindToken, Key(id))
		return err
	})
	return t, err
}

// TokenByHash returns the token whose secret hashes to hash.
func (db *DB) TokenByHash(hash string) (model.Token, error) {
	all, err := db.Tokens()
	if err != nil {
		return model.Token{}, err
	}
	for _, t := range all {
		if t.Hash == hash {
			return t, nil
		}
	}
	return model.Token{}, ErrNotFound
}

// CreateToken stores t with a new id and creation time.
func (db *DB) CreateToken(t model.Token) (model.Token, error) {
	err := db.b.Update(func(tx Tx) error {
		id, err := tx.NextID(KindToken)
		if err != nil {
			return err
		}
		t.ID, t.Created = id, db.stamp()
		return put(tx, KindToken, Key(id), t)
	})
	return t, err
}

// UpdateToken applies mutate to token id.
func (db *DB) UpdateToken(id int, mutate func(*model.Token) error) (t model.Token, err error) {
	err = db.b.Update(func(tx Tx) error {
		t, err = get[model.Token](tx, KindToken, Key(id))
		if err != nil {
			return err
		}
		old := t
		if err := mutate(&t); err != nil {
			return err
		}
		t.ID, t.Hash, t.Created = old.ID, old.Hash, old.Created
		return put(tx, KindToken, Key(id), t)
	})
	return t, err
}

// DeleteToken revokes token id.
func (db *DB) DeleteToken(id int) error {
	return db.b.Update(func(tx Tx) error {
		if b, err := tx.Get(KindToken, Key(id)); err != nil || b == nil {
			return errors.Join(err, ErrNotFound)
		}
		return tx.Delete(KindToken, Key(id))
	})
}

// HasTokens reports whether any token exists (bootstrap runs when none does).
func (db *DB) HasTokens() (bool, error) {
	found := false
	err := db.b.View(func(tx Tx) error {
		return tx.Scan(KindToken, nil, func(_, _ []byte) error { found = true; return errStop })
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

// CreateFirstToken stores t, as CreateToken does, only when no token exists yet, in
// one transaction: of hosts bootstrapping a shared store together, one creates it.
// created reports whether this call did.
func (db *DB) CreateFirstToken(t model.Token) (out model.Token, created bool, err error) {
	err = db.b.Update(func(tx Tx) error {
		created = false
		exists := false
		if err := tx.Scan(KindToken, nil, func(_, _ []byte) error { exists = true; return errStop }); err != nil && !errors.Is(err, errStop) {
			return err
		}
		if exists {
			return nil
		}
		id, err := tx.NextID(KindToken)
		if err != nil {
			return err
		}
		out = t
		out.ID, out.Created = id, db.stamp()
		created = true
		return put(tx, KindToken, Key(id), out)
	})
	return out, created, err
}
