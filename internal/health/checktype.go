package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sync"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// A check type beyond Linode's four is one file that registers itself:
//
//	func init() {
//		health.Register(health.CheckDef{
//			CheckInfo: model.CheckInfo{Name: "smtp", Label: "SMTP Banner", Protocols: ...},
//			Probe:     probeSMTP, // func(ctx, health.Target) error
//		})
//	}
//
// Register also describes it to model, so the API accepts it (check_body is
// required when UsesBody is set), the CLI's help and the console offer it. The
// checker does the rest as for any check: the schedule, check_timeout,
// check_attempts, the status machine and passive checks. Registered checks run on
// the worker goroutines; Linode's four (none, connection, http, http_body) are
// described in model and run by probe.go and, on Linux, the epoll engine.

// Probe runs one active check of a node and returns nil when it passes. ctx ends
// at check_timeout or when the check is no longer wanted; a Probe must return
// soon after.
type Probe func(ctx context.Context, t Target) error

// Target is what a Probe checks.
type Target struct {
	// Addr is the node's address (for a udp config: its address at
	// udp_check_port, checked over TCP).
	Addr netip.AddrPort
	// Path is check_path, "/" when empty.
	Path string
	// Body is check_body, compiled; nil unless the check type UsesBody.
	Body *regexp.Regexp
	// Dialer dials from the server's backend source address (--backend-source),
	// as every check and all proxied traffic do.
	Dialer *net.Dialer
}

// CheckDef is what Register needs to know of a check type.
type CheckDef struct {
	model.CheckInfo
	Probe Probe
}

// builtin are the check types this package runs itself (probe.go, the engine).
var builtin = []model.Check{model.CheckNone, model.CheckConnection, model.CheckHTTP, model.CheckHTTPBody}

// probes are the registered check types' probes, by name.
var probes struct {
	mu     sync.RWMutex
	byName map[model.Check]Probe
}

// Register adds a check type. Call it from an init function. It panics when the
// name is taken, Probe is nil, or the description is incomplete (see
// model.RegisterCheck): mistakes to find at start.
func Register(d CheckDef) {
	if d.Probe == nil {
		panic(fmt.Sprintf("health: check %q has no Probe", d.Name))
	}
	probes.mu.Lock()
	defer probes.mu.Unlock()
	if probes.byName[d.Name] != nil || slices.Contains(builtin, d.Name) {
		panic(fmt.Sprintf("health: check %q registered twice", d.Name))
	}
	model.RegisterCheck(d.CheckInfo)
	if probes.byName == nil {
		probes.byName = map[model.Check]Probe{}
	}
	probes.byName[d.Name] = d.Probe
}

// probeOf returns the Probe of a registered check type, nil for others.
func probeOf(k model.Check) Probe {
	probes.mu.RLock()
	defer probes.mu.RUnlock()
	return probes.byName[k]
}

// Implements reports whether the checker can run check type k: one of Linode's
// four or a registered one.
func Implements(k model.Check) bool { return slices.Contains(builtin, k) || probeOf(k) != nil }

// runProbe runs one active check: a registered type's Probe, or probe.go's.
func (c *Checker) runProbe(ctx context.Context, n *Node, cs *checkSpec) error {
	if cs.custom == nil {
		return c.probe(ctx, n, cs)
	}
	if !n.addrOK {
		return errBadAddress
	}
	if cs.bodyErr != nil {
		return fmt.Errorf("check_body: %w", cs.bodyErr)
	}
	ctx, cancel := context.WithTimeout(ctx, cs.Timeout)
	defer cancel()
	err := cs.custom(ctx, Target{Addr: n.addr, Path: cs.Path, Body: cs.body, Dialer: c.dialer})
	if err != nil && (ctx.Err() == context.DeadlineExceeded || errors.Is(err, os.ErrDeadlineExceeded)) {
		return fmt.Errorf("timed out after %v: %w", cs.Timeout, err)
	}
	return err
}
