package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// Scope levels, ordered: read_write includes read_only.
type level uint8

const (
	levelNone level = iota
	levelReadOnly
	levelReadWrite
)

// scopeResources are the resource names Linode's OAuth scopes use. nodebalancer acts
// on "nodebalancers" and "firewall"; the others are accepted so tokens made for
// Linode tools keep their familiar shape, and grant nothing here.
var scopeResources = []string{
	"account", "child_account", "databases", "domains", "events", "firewall", "images",
	"ips", "linodes", "lke", "longview", "monitor", "nodebalancers", "object_storage",
	"stackscripts", "volumes", "vpc",
}

// scopeSet is a parsed scopes string: "*" or resource→level.
type scopeSet struct {
	all bool
	res map[string]level
}

// parseScopes parses Linode's scopes: "*" or comma/space separated
// "resource:read_only|read_write" entries. It returns the set and its normalised
// spelling (comma separated, resources in the order given, each once).
func parseScopes(s string) (scopeSet, string, error) {
	set := scopeSet{res: map[string]level{}}
	var order []string
	for _, e := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if e == "*" {
			set.all = true
			continue
		}
		res, lv, ok := strings.Cut(e, ":")
		if !ok || !slices.Contains(scopeResources, res) {
			return scopeSet{}, "", fmt.Errorf("unknown scope %s: use \"*\" or entries such as nodebalancers:read_only, nodebalancers:read_write", quoteField(e))
		}
		var l level
		switch lv {
		case "read_only":
			l = levelReadOnly
		case "read_write":
			l = levelReadWrite
		default:
			return scopeSet{}, "", fmt.Errorf("unknown scope %s: the level must be read_only or read_write", quoteField(e))
		}
		if _, seen := set.res[res]; !seen {
			order = append(order, res)
		}
		set.res[res] = max(set.res[res], l)
	}
	if set.all {
		return scopeSet{all: true}, "*", nil
	}
	if len(order) == 0 {
		return scopeSet{}, "", errors.New("scopes must not be empty")
	}
	parts := make([]string, len(order))
	for i, r := range order {
		name := "read_only"
		if set.res[r] == levelReadWrite {
			name = "read_write"
		}
		parts[i] = r + ":" + name
	}
	return set, strings.Join(parts, ","), nil
}

// allows reports whether the set grants level l on resource res.
func (s scopeSet) allows(res string, l level) bool {
	return s.all || s.res[res] >= l
}

// covers reports whether s grants everything o does (a token may only hand out
// what it holds).
func (s scopeSet) covers(o scopeSet) bool {
	if s.all {
		return true
	}
	if o.all {
		return false
	}
	for r, l := range o.res {
		if s.res[r] < l {
			return false
		}
	}
	return true
}

// hashToken is how a secret is stored: SHA-256, hex.
func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// newSecret returns a fresh 256-bit token, hex encoded.
func newSecret() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	return hex.EncodeToString(b[:])
}

// displayPrefix is the part of a secret shown after creation, as Linode shows the
// first 16 characters. It is at most a quarter of the secret so a short,
// operator-chosen bootstrap secret is never revealed whole.
func displayPrefix(secret string) string {
	return secret[:min(16, len(secret)/4)]
}

// MinSecretLen is the shortest bootstrap secret Bootstrap accepts.
const MinSecretLen = 16

// Bootstrap makes sure the store has a token to start with. When it has none, it
// stores secret (or, when secret is empty, a freshly generated one) as a "*" token
// labelled "bootstrap" and returns the secret, so the server can show it once. When
// tokens already exist it changes nothing and returns "".
func Bootstrap(db *store.DB, secret string) (created string, err error) {
	has, err := db.HasTokens()
	if err != nil {
		return "", fmt.Errorf("read tokens: %w", err)
	}
	if has {
		return "", nil
	}
	if secret == "" {
		secret = newSecret()
	} else if err := checkSecret(secret); err != nil {
		return "", err
	}
	// Hosts of a cluster may bootstrap the shared store at once: one token wins.
	_, made, err := db.CreateFirstToken(model.Token{
		Label:  "bootstrap",
		Scopes: "*",
		Hash:   hashToken(secret),
		Prefix: displayPrefix(secret),
	})
	if err != nil {
		return "", fmt.Errorf("store bootstrap token: %w", err)
	}
	if !made {
		return "", nil
	}
	return secret, nil
}

func checkSecret(s string) error {
	if len(s) < MinSecretLen {
		return fmt.Errorf("the bootstrap token must be at least %d characters", MinSecretLen)
	}
	if len(s) > maxTokenLen {
		return fmt.Errorf("the bootstrap token must be at most %d characters", maxTokenLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return errors.New("the bootstrap token must be printable ASCII without spaces")
		}
	}
	return nil
}

// maxTokenLen bounds what is hashed from an Authorization header.
const maxTokenLen = 512

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > maxTokenLen {
		return "", false
	}
	return tok, true
}

// tokenCache keeps hash→token in memory so authenticating a request is a map
// lookup. Token writes made through this API reset it at once; it also reloads
// after cacheTTL (so revocations by another process sharing the store take effect)
// and, at most every missReload, on a miss (so a token created elsewhere works soon).
type tokenCache struct {
	db *store.DB

	mu     sync.RWMutex
	byHash map[[sha256.Size]byte]cachedToken
	loaded time.Time // zero: not loaded
}

// cachedToken is a token with its scopes already parsed.
type cachedToken struct {
	model.Token
	scopes   scopeSet
	scopesOK bool
}

const (
	cacheTTL   = 2 * time.Second
	missReload = 250 * time.Millisecond
)

// lookup returns the token whose secret is secret.
func (c *tokenCache) lookup(secret string) (cachedToken, bool, error) {
	hash := sha256.Sum256([]byte(secret))
	c.mu.RLock()
	t, ok := c.byHash[hash]
	age, loaded := time.Since(c.loaded), !c.loaded.IsZero()
	c.mu.RUnlock()
	if loaded && age < cacheTTL && (ok || age < missReload) {
		return t, ok, nil
	}
	if err := c.reload(); err != nil {
		return cachedToken{}, false, err
	}
	c.mu.RLock()
	t, ok = c.byHash[hash]
	c.mu.RUnlock()
	return t, ok, nil
}

func (c *tokenCache) reload() error {
	all, err := c.db.Tokens()
	if err != nil {
		return err
	}
	m := make(map[[sha256.Size]byte]cachedToken, len(all))
	for _, t := range all {
		var key [sha256.Size]byte
		if n, err := hex.Decode(key[:], []byte(t.Hash)); err != nil || n != len(key) {
			continue // not a hash this package wrote: it matches no secret
		}
		ct := cachedToken{Token: t}
		var err error
		ct.scopes, _, err = parseScopes(t.Scopes)
		ct.scopesOK = err == nil
		m[key] = ct
	}
	c.mu.Lock()
	c.byHash, c.loaded = m, time.Now()
	c.mu.Unlock()
	return nil
}

// invalidate makes the next lookup read the store.
func (c *tokenCache) invalidate() {
	c.mu.Lock()
	c.loaded = time.Time{}
	c.mu.Unlock()
}
