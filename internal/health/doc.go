// Package health decides each backend node's status (UP, DOWN, Unknown), as Linode's
// NodeBalancer does, from active checks (TCP connect, HTTP status, HTTP body
// regex) and from passive observations of real traffic that the data plane
// reports. It writes the verdict into the node's balance.State, which the
// balancer reads on the hot path, and tells the data plane which
// configuration changed so that it can refresh its pick tables.
//
// # Active checks
//
// Every node whose mode is not reject is checked on its configuration's
// schedule with its configuration's check:
//
//   - connection: a TCP connect to the node's address within check_timeout (on
//     Linux the node's SYN-ACK; the connection is reset before the node's
//     application accepts it, as HAProxy's checks are);
//   - http: GET check_path over HTTP/1.1 (Host: the node address,
//     Connection: close, User-Agent: nodebalancer-health-check/1); a 2xx or
//     3xx status passes (redirects are not followed), any other status, a
//     timeout or a connect error fails. Only the status line is read (interim
//     1xx answers skipped), without an HTTP client: it is the cheapest check
//     that still sees the application answer;
//   - http_body: as http, and the first MaxBodyBytes (64 KiB) of the body
//     must also match the check_body regular expression, compiled once per
//     configuration change;
//   - none: no active checks; nodes stay Unknown (eligible, as UP nodes
//     are) unless passive checks take them DOWN, as on Linode;
//   - a registered type: one file that calls Register with a Probe
//     (checktype.go); it runs on the worker goroutines, under the same
//     schedule, timeout and status machine as the others.
//
// Falling: check_attempts failed checks in a row take a node DOWN, whether it
// was UP or still Unknown. Fewer leave its status as it was, so a node stays
// Unknown (which the balancer treats as eligible) until its first success or
// its check_attempts-th failure: "Unknown" means no verdict yet.
//
// Rising: one passing check brings a DOWN node back UP. That is what Linode
// does (check_attempts counts failures only and the API has no field for
// successes); HAProxy's rise 2 would make every recovery wait one more
// check_interval (31 s by default) with no way for a user to turn it off.
// Flapping stays bounded because leaving again takes check_attempts failures.
//
// # Passive checks
//
// With check_passive on, the data plane reports the outcome of real traffic
// through the node's *Node handle: Failure for a failed connect, a timeout or
// (http/https) a 5xx response other than 501 and 505, and Success otherwise.
// PassiveThreshold failures (default 3) within PassiveWindow (default 10 s) of
// the first of them, with no success in between, take the node DOWN. Linode
// takes a node out on a single failure, which removes a healthy node whenever
// one request hits an uncaught exception; three in ten seconds still removes a
// broken node within a few requests. PassiveThreshold 1 restores Linode's
// exact rule.
//
// A node taken DOWN by passive checks comes back when an active check that
// started after the trip passes (a check already in flight does not count;
// the node is then UP), or, with check none, after PassiveCooldown (default
// 30 s): it is Unknown again and real traffic judges it anew. Reports are lock-free and allocation-free: a few
// atomic operations on the node's own handle, no map lookup; the status
// change itself is applied within microseconds by the node's goroutine.
//
// # Timing
//
// A node's first check runs after a random delay in [0, min(interval/2,
// 500 ms)) once it is added, not a full interval later. Later checks run on
// the node's own grid origin+phase+k·interval, with phase drawn at random in
// [0, interval) so that nodes added together spread over the interval instead
// of firing in lockstep, each delayed by a random jitter in [0, J) with
// J = min(interval/20, (interval−timeout)/2, 500 ms). Checks of one node never
// overlap: the next starts at the first grid point after the previous one
// started, or as soon as it ends if it ended later (a slow check delays the
// next). A node that starts failing is therefore DOWN within
// check_attempts×check_interval + check_timeout + J, plus timer wake-up
// latency (on Linux up to the engine's 5 ms tick), while fewer than
// MaxConcurrentChecks checks are in flight.
//
// # Modes and configuration changes
//
// A reject node is not checked at all (no check traffic reaches it) and its
// status is DOWN. When it returns to accept, drain or backup its status
// restarts as Unknown and its first check runs within
// 500 ms: the verdict from before the rejection is stale, since reject is
// how operators take a node out for maintenance. drain and backup nodes are
// checked like accept nodes.
//
// Set reconciles a configuration: a node with the same ID and address keeps
// its status and schedule; a changed address is a new node (new handle, new
// balance.State, status Unknown); a removed node stops. A change of the
// configuration's check settings keeps every status but restarts the
// schedules, so the new check runs within 500 ms.
//
// # Concurrency
//
// No goroutine waits on behalf of a node. Every node's next active check sits on one
// timer heap. On Linux one goroutine is the scheduler and the check engine at once, as
// HAProxy's event loop is: it sleeps until the next check is due (a timerfd, on a 5 ms
// tick so that checks due together start in one pass) or a check's socket is ready,
// and runs connection and http checks itself on non-blocking sockets (connect, one
// write, the reads of the status line; closed with a reset, so no TIME_WAIT is left
// behind). As HAProxy's, a connection check turns TCP_QUICKACK off, so it ends before
// the node's application has a connection to accept: the node's kernel answering the
// SYN is the check. The engine parks in Go's netpoller rather than in a system call
// of its own, which is what keeps Go's scheduler from costing more than the checks.
// http_body checks (and every check elsewhere) go to worker goroutines: at
// most MaxConcurrentChecks (default 1,024), started as needed and ended after
// 10 s without work. A check schedules its node's next one when it ends, which
// is what keeps a node's checks from overlapping.
//
// A node with passive checks only has nothing running: its Failure reports
// queue a trip (once per run of failures) that Run's goroutine applies, and the
// cool-down is a timer (time.AfterFunc). So 50,000 nodes with check none cost
// no goroutine each, and idle nodes with active checks cost one heap entry.
// Run returns only when the scheduler and every check in flight have ended.
// Status changes are coalesced per configuration and delivered to
// Options.OnChange from a single goroutine.
package health
