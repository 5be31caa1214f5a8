// Package etcd is the shared store.Backend: every nodebalancer host of a cluster
// keeps its state in one etcd cluster. Transactions are optimistic and serializable
// (reads at one revision, committed only if nothing they read changed since, retried
// on conflict), and the change feed comes from etcd's watch.
package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nodebalancer/nodebalancer/internal/store"
)

// DefaultPrefix is where a cluster's keys live when no prefix is given.
const DefaultPrefix = "/nodebalancer/"

// Options configure a Backend.
type Options struct {
	// Endpoints are the etcd client URLs (http://host:2379, https://…).
	Endpoints []string
	// Prefix is prepended to every key (DefaultPrefix when empty), so that several
	// clusters, or other programs, can share one etcd.
	Prefix string
	// TLS, when set, is used to reach etcd (CA, client certificate).
	TLS *tls.Config
	// Timeout bounds one store operation, retries included (5 s when zero): past it
	// the operation fails with store.ErrUnavailable.
	Timeout time.Duration
	// MaxAttempts bounds how often a conflicting transaction is tried (64 when
	// zero); past it Update fails with store.ErrConflict.
	MaxAttempts int
	// Log receives the watch's reconnections and resets.
	Log *slog.Logger
}

// Backend is a store.Backend on etcd.
type Backend struct {
	c       *clientv3.Client
	prefix  string
	timeout time.Duration
	tries   int
	log     *slog.Logger
	feed    *store.Feed

	stop    context.CancelFunc
	done    chan struct{}
	lastErr atomic.Pointer[string] // why the last operation could not reach etcd; nil when it could
	watched atomic.Uint64          // the revision the watch has reached
	resets  atomic.Uint64
	closeMu sync.Once
}

// Open connects to etcd, reads the current revision and starts the watch that feeds
// Watch. It fails when etcd cannot be reached within the timeout.
func Open(o Options) (*Backend, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 64
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            o.Endpoints,
		DialTimeout:          o.Timeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		TLS:                  o.TLS,
		// The etcd client logs through zap; its reconnection chatter adds nothing
		// to what this package reports.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	b := &Backend{c: c, prefix: o.Prefix, timeout: o.Timeout, tries: o.MaxAttempts, log: o.Log,
		done: make(chan struct{})}
	rev, err := b.Revision()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	b.feed = store.NewFeed(rev, 0)
	b.watched.Store(rev)
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go b.follow(ctx, int64(rev))
	return b, nil
}

// Client is the etcd client, for the cluster membership and status that live
// beside the store (leases, heartbeats).
func (b *Backend) Client() *clientv3.Client { return b.c }

// Prefix is the key prefix every key of this cluster starts with.
func (b *Backend) Prefix() string { return b.prefix }

// Timeout is the bound of one operation.
func (b *Backend) Timeout() time.Duration { return b.timeout }

// Unreachable returns why etcd could not be reached by the latest operation that
// tried, or "" when it could.
func (b *Backend) Unreachable() string {
	if p := b.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// WatchedRevision is the etcd revision the change feed has reached.
func (b *Backend) WatchedRevision() uint64 { return b.watched.Load() }

// The key layout under the prefix. State kinds live under s/ so that one etcd
// watch sees exactly the desired state; other kinds under d/. Keys are the store's
// bytes as they are, so etcd's byte order is the store's key order.
//
//	<prefix>s/<kind>/<key>   state kinds (store.Kind.State)
//	<prefix>d/<kind>/<key>   every other kind
//	<prefix>seq/<kind>       the last id NextID handed out (decimal)
//	<prefix>ver/<kind>       rewritten by every transaction that writes the kind,
//	                         so that a Scan can detect a key added or removed
func (b *Backend) kindPrefix(k store.Kind) string {
	if k.State() {
		return b.prefix + "s/" + string(k) + "/"
	}
	return b.prefix + "d/" + string(k) + "/"
}

func (b *Backend) seqKey(k store.Kind) string { return b.prefix + "seq/" + string(k) }
func (b *Backend) verKey(k store.Kind) string { return b.prefix + "ver/" + string(k) }

// unavailable wraps an etcd error as store.ErrUnavailable and remembers the reason
// for /healthz; a context error of the caller's own is returned as it is.
func (b *Backend) unavailable(err error) error {
	reason := "etcd unreachable: " + err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		reason = "etcd did not answer within " + b.timeout.String()
	}
	b.lastErr.Store(&reason)
	return fmt.Errorf("%w: %s", store.ErrUnavailable, reason)
}

func (b *Backend) reached() {
	if b.lastErr.Load() != nil {
		b.lastErr.Store(nil)
	}
}

// Revision implements store.Backend: etcd's revision, read linearizably.
func (b *Backend) Revision() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	r, err := b.c.Get(ctx, b.prefix+"s/", clientv3.WithCountOnly())
	if err != nil {
		return 0, b.unavailable(err)
	}
	b.reached()
	return uint64(r.Header.Revision), nil
}

// StateRevision is the etcd revision of the latest write to the desired state (as
// opposed to Revision, which also counts tokens, stats and heartbeats): a host whose
// data plane has applied it is up to date. Every write to a kind rewrites its
// version key, so the newest of the state kinds' version keys tells.
func (b *Backend) StateRevision() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	r, err := b.c.Get(ctx, b.prefix+"ver/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, b.unavailable(err)
	}
	var rev int64
	for _, kv := range r.Kvs {
		if store.Kind(strings.TrimPrefix(string(kv.Key), b.prefix+"ver/")).State() {
			rev = max(rev, kv.ModRevision)
		}
	}
	return uint64(rev), nil
}

// View implements store.Backend: every read of fn sees the state at one revision,
// the one the first read found (read linearizably).
func (b *Backend) View(fn func(store.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	return fn(&tx{b: b, ctx: ctx})
}

// Update implements store.Backend. fn runs on a snapshot; the writes it made are
// committed in one etcd transaction guarded by the mod revision of everything fn
// read (and, for each scanned kind, its version key). If another writer changed any
// of it meanwhile, fn runs again on a new snapshot, up to MaxAttempts times.
func (b *Backend) Update(fn func(store.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	for attempt := 0; attempt < b.tries; attempt++ {
		t := &tx{b: b, ctx: ctx, write: true, reads: map[string]int64{}, writes: map[string]*[]byte{}}
		if err := fn(t); err != nil {
			return err
		}
		if len(t.writes) == 0 {
			return nil
		}
		ok, err := t.commit()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		// Someone else committed first: back off a little, at random, so that two
		// hosts in a storm do not collide again in lockstep.
		d := time.Duration(rand.IntN(1+min(attempt, 10)*2)) * time.Millisecond
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return b.unavailable(ctx.Err())
		}
	}
	return fmt.Errorf("%w (%d attempts)", store.ErrConflict, b.tries)
}

// Changed calls fn after every write to kind k by anyone (a kind outside the
// change feed, such as tokens), until ctx ends: how a host learns that another
// host revoked a token. A broken watch is started again (and fn called, since
// writes may have been missed).
func (b *Backend) Changed(ctx context.Context, k store.Kind, fn func()) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range b.c.Watch(wctx, b.kindPrefix(k), clientv3.WithPrefix()) {
			if resp.Err() != nil {
				break
			}
			if len(resp.Events) > 0 {
				fn()
			}
		}
		cancel()
		fn() // writes may have gone unseen while the watch was down
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Compact discards etcd's history before revision rev (Kubernetes' API server does
// the same every five minutes): heartbeats write every second, and an etcd whose
// history is never compacted fills its quota. A watcher still behind rev resets
// and reloads. Compacting a revision already compacted is not an error.
func (b *Backend) Compact(rev uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	_, err := b.c.Compact(ctx, int64(rev))
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return b.unavailable(err)
	}
	return nil
}

// Since returns what the feed holds after revision after (store.DB.Since).
func (b *Backend) Since(after uint64) (store.Change, bool) { return b.feed.Since(after) }

// Watch implements store.Backend.
func (b *Backend) Watch(ctx context.Context, after uint64) <-chan store.Change {
	return b.feed.Watch(ctx, after)
}

// Close implements store.Backend.
func (b *Backend) Close() error {
	var err error
	b.closeMu.Do(func() {
		b.stop()
		<-b.done
		err = b.c.Close()
	})
	return err
}

// follow turns etcd's watch of the state keys into the feed, from revision rev on.
// A watch that breaks is started again where it stopped; one that fell behind a
// compaction resets the feed, so that readers load the state again.
func (b *Backend) follow(ctx context.Context, rev int64) {
	defer close(b.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := b.c.Watch(wctx, b.prefix+"s/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range ch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				b.log.Warn("etcd watch fell behind a compaction: reloading the state", "revision", rev,
					"compacted", resp.CompactRevision)
				if r, err := b.Revision(); err == nil {
					rev = int64(r)
					b.resets.Add(1)
					b.watched.Store(r)
					b.feed.Reset(r)
				}
				break
			}
			if err := resp.Err(); err != nil {
				b.log.Warn("etcd watch broke", "revision", rev, "err", err)
				break
			}
			backoff = 50 * time.Millisecond
			rev = b.publish(resp.Events, rev)
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// publish sends events (in revision order, several per revision when a transaction
// wrote several keys) to the feed, one Change per revision, and returns the last
// revision.
func (b *Backend) publish(events []*clientv3.Event, rev int64) int64 {
	base := b.prefix + "s/"
	var keys []store.Ref
	cur := int64(0)
	flush := func() {
		if cur != 0 {
			b.feed.Publish(uint64(cur), keys)
			b.watched.Store(uint64(cur))
			rev = cur
		}
		keys = nil
	}
	for _, ev := range events {
		r := ev.Kv.ModRevision
		if r != cur {
			flush()
			cur = r
		}
		rest := strings.TrimPrefix(string(ev.Kv.Key), base)
		kind, key, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		keys = append(keys, store.Ref{Kind: store.Kind(kind), Key: key})
	}
	flush()
	return rev
}

// tx is one transaction: reads at one revision, writes buffered until commit.
type tx struct {
	b     *Backend
	ctx   context.Context
	rev   int64 // the snapshot's revision; 0 until the first read
	write bool
	// reads maps every key read to the mod revision it had (0: absent).
	reads map[string]int64
	// writes maps every key written to its new value; nil for a delete.
	writes map[string]*[]byte
}

// get reads key (range options opts) at the snapshot, fixing the snapshot on the
// first read.
func (t *tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	r, err := t.b.c.Get(t.ctx, key, opts...)
	if err != nil {
		return nil, t.b.unavailable(err)
	}
	t.b.reached()
	if t.rev == 0 {
		t.rev = r.Header.Revision
	}
	return r, nil
}

// read returns key's value at the snapshot (nil when absent), guarding it when the
// transaction writes.
func (t *tx) read(key string) ([]byte, error) {
	if w, ok := t.writes[key]; ok {
		if w == nil {
			return nil, nil
		}
		return *w, nil
	}
	r, err := t.get(key)
	if err != nil {
		return nil, err
	}
	var v []byte
	var mod int64
	if len(r.Kvs) == 1 {
		v, mod = r.Kvs[0].Value, r.Kvs[0].ModRevision
		if v == nil {
			v = []byte{}
		}
	}
	if t.write {
		if _, seen := t.reads[key]; !seen {
			t.reads[key] = mod
		}
	}
	return v, nil
}

func (t *tx) Get(k store.Kind, key []byte) ([]byte, error) {
	return t.read(t.b.kindPrefix(k) + string(key))
}

func (t *tx) Put(k store.Kind, key, value []byte) error {
	if !t.write {
		return errors.New("etcd: Put in a read-only transaction")
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	t.writes[t.b.kindPrefix(k)+string(key)] = &v
	t.touch(k)
	return nil
}

func (t *tx) Delete(k store.Kind, key []byte) error {
	if !t.write {
		return errors.New("etcd: Delete in a read-only transaction")
	}
	t.writes[t.b.kindPrefix(k)+string(key)] = nil
	t.touch(k)
	return nil
}

// touch rewrites kind k's version key, which the Scans of concurrent transactions
// guard on.
func (t *tx) touch(k store.Kind) {
	empty := []byte{}
	t.writes[t.b.verKey(k)] = &empty
}

type kv struct {
	k string
	v []byte
}

func (t *tx) Scan(k store.Kind, prefix []byte, fn func(key, value []byte) error) error {
	base := t.b.kindPrefix(k)
	from := base + string(prefix)
	if t.write {
		// A key added or removed under the prefix by another writer changes the
		// kind's version key: guard on it.
		if _, err := t.read(t.b.verKey(k)); err != nil {
			return err
		}
	}
	r, err := t.get(from, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	got := make([]kv, 0, len(r.Kvs))
	for _, e := range r.Kvs {
		key := string(e.Key)
		if _, mine := t.writes[key]; mine {
			continue
		}
		got = append(got, kv{key, e.Value})
	}
	sorted := true
	for key, w := range t.writes {
		if w != nil && strings.HasPrefix(key, from) {
			got, sorted = append(got, kv{key, *w}), false
		}
	}
	if !sorted {
		slices.SortFunc(got, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	}
	for _, e := range got {
		if err := fn([]byte(e.k[len(base):]), e.v); err != nil {
			return err
		}
	}
	return nil
}

// NextID reads and advances kind k's counter in this transaction: two transactions
// that take the same id both read the counter, so only one of them commits.
func (t *tx) NextID(k store.Kind) (int, error) {
	if !t.write {
		return 0, errors.New("etcd: NextID in a read-only transaction")
	}
	key := t.b.seqKey(k)
	v, err := t.read(key)
	if err != nil {
		return 0, err
	}
	n := 0
	if len(v) > 0 {
		if n, err = strconv.Atoi(string(v)); err != nil {
			return 0, fmt.Errorf("etcd: counter %s holds %q", key, v)
		}
	}
	n++
	next := []byte(strconv.Itoa(n))
	t.writes[key] = &next
	return n, nil
}

// Revision is the snapshot's revision; a transaction that has read nothing yet
// fixes its snapshot here.
func (t *tx) Revision() (uint64, error) {
	if t.rev == 0 {
		if _, err := t.get(t.b.prefix+"s/", clientv3.WithCountOnly()); err != nil {
			return 0, err
		}
	}
	return uint64(t.rev), nil
}

// commit writes the buffered writes if nothing read changed; false means a
// conflict.
func (t *tx) commit() (bool, error) {
	cmps := make([]clientv3.Cmp, 0, len(t.reads))
	for key, mod := range t.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", mod))
	}
	ops := make([]clientv3.Op, 0, len(t.writes))
	for key, w := range t.writes {
		if w == nil {
			ops = append(ops, clientv3.OpDelete(key))
		} else {
			ops = append(ops, clientv3.OpPut(key, string(*w)))
		}
	}
	r, err := t.b.c.Txn(t.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrTooManyOps) {
			return false, fmt.Errorf("etcd refused a transaction of %d writes and %d reads: raise its --max-txn-ops: %w",
				len(ops), len(cmps), err)
		}
		// The transaction may have reached etcd before the error: say so, the
		// caller cannot know whether it was applied.
		return false, fmt.Errorf("%w (etcd did not confirm the write: it may or may not have been applied)", t.b.unavailable(err))
	}
	t.b.reached()
	return r.Succeeded, nil
}
