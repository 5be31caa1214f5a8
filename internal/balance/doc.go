// Package balance chooses the backend node for each new client connection:
// the node modes and statuses of Linode's NodeBalancer, its algorithms
// (roundrobin, leastconn, source, and ring_hash for udp) and table stickiness. It is pure: no
// sockets, no clocks (time is passed in), no logging, so every rule can be
// tested and fuzzed exactly.
//
// # Eligibility
//
// A node is eligible for new traffic when its status is not DOWN (unknown
// counts, so a fresh configuration serves at once) and its mode is accept; if
// no accept node is eligible, the backup nodes that are not DOWN are used
// instead, and new traffic returns to the accept nodes as soon as one is
// eligible again. Reject nodes take nothing; drain nodes take only sticky
// clients already pinned to them (see Pool.Honour). A DOWN node is never
// returned, not even to a sticky client.
//
// # Snapshots and refresh
//
// A Pool is built once per configuration change and never modified. Node
// status lives in a State shared between snapshots and changes at any time;
// the eligible set and each algorithm's table are derived from the statuses
// by Pool.Refresh and published through an atomic pointer, so the per
// connection path (Pick, Choose) reads an immutable table plus a few atomics,
// takes no lock and allocates nothing. Between a status change and the
// Refresh that follows it, a node that went DOWN is still skipped (Pick checks
// the live status of what it chooses), while a node that came back waits for
// the Refresh.
//
// # Algorithms
//
// roundrobin is nginx's smooth weighted round robin: weights 5, 1, 1 give
// a a b a c a a, spreading each node's turns instead of bursting them. One
// full cycle is computed when the table is built, and a pick is one atomic
// increment and one array read, so it costs the same for 3 nodes or 1,000.
//
// leastconn picks the node with the fewest active connections relative to
// its weight, comparing active_a·weight_b with active_b·weight_a (no
// division), scanning from a rotating start so that equally loaded nodes take
// turns. It is exact, so it scans every eligible node: O(N) per pick.
//
// source maps the client address to a node with Maglev consistent hashing
// (Eisenbud et al., NSDI 2016): each node fills a share of a prime-sized
// lookup table (65,537 slots up to 655 nodes, 655,373 above) proportional to
// its weight, following a permutation of the slots derived from its node ID.
// A pick is one multiply and one table read, O(1) whatever the node count;
// the table is rebuilt only when the eligible set changes (milliseconds, off
// the hot path). When a node leaves or joins the eligible set, about 1/N of
// clients move, nearly all of them from or to that node (Maglev does not
// promise that none move between other nodes; the tests measure well under
// 1 %). Rendezvous (highest random weight) hashing moves exactly the minimum
// and needs no table, but costs one hash per eligible node on every pick,
// O(N): on the order of a microsecond at 1,000 nodes, against a few
// nanoseconds here. Linode's own source algorithm takes the
// address modulo the node count and remaps nearly every client when the node
// set changes; this one does not.
//
// # Adding an algorithm
//
// Each algorithm is one file that calls Register with its name, the protocols
// it serves and Build, which turns the eligible nodes into a Picker (see
// algorithm.go); roundrobin.go, leastconn.go, source.go and ringhash.go are
// Linode's four. Register describes it to model, so the API, the CLI's help
// and the console offer it, and ParseAlgorithm finds it for the data plane.
// The pool keeps everything that is the same for every algorithm: modes,
// backups, DOWN nodes, stickiness, retries. A pick costs one interface call
// more than a switch did: about 1 ns (BenchmarkPick, roundrobin 3.7 → 4.8 ns,
// source 3.7 → 4.2 ns, leastconn unchanged; medians of 3 runs on a shared
// 2-core machine), still without a lock or an allocation.
//
// # Stickiness
//
// StickyTable holds table stickiness (client address → node ID, expiring
// after 30 minutes without use); Node.Token and Pool.ByToken carry
// http_cookie stickiness through an opaque NB_SRVID cookie. Pool.Choose
// applies a pin when Pool.Honour allows it and picks afresh otherwise.
package balance
