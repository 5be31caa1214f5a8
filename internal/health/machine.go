package health

import (
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
)

// machine is one node's health state machine. It is pure (time is passed in,
// no I/O, no locking) so that every rule is tested exactly; its owner
// serializes calls (Node.mu) and copies status into the balance.State.
type machine struct {
	status   balance.Status
	attempts int // failed checks in a row that take the node DOWN (≥ 1)
	failures int // failed active checks in a row

	passiveDown bool      // DOWN because of passive failures and not recovered since
	passiveAt   time.Time // when that trip was applied
}

// newMachine returns the machine of a node entering service: Unknown until a
// verdict. Under check none only passive checks ever give one (DOWN), so such a
// node stays Unknown while it serves, as on Linode.
func newMachine(attempts int) machine {
	return machine{attempts: max(attempts, 1)}
}

// set moves to st and reports whether that is a change.
func (m *machine) set(st balance.Status) bool {
	if m.status == st {
		return false
	}
	m.status = st
	return true
}

// active applies the result of an active check that started at started.
func (m *machine) active(ok bool, started time.Time) (changed bool) {
	if ok {
		// A check that began before a passive trip (or at the same instant)
		// may have seen the node before it broke: it does not bring it back.
		if m.passiveDown && !started.After(m.passiveAt) {
			return false
		}
		m.failures = 0
		m.passiveDown = false
		return m.set(balance.StatusUp)
	}
	m.failures++
	if m.failures >= m.attempts {
		return m.set(balance.StatusDown)
	}
	return false
}

// trip applies a passive trip (enough failures on real traffic) at now. A
// node already DOWN stays as it is: its recovery rule does not change.
func (m *machine) trip(now time.Time) (changed bool) {
	if m.status == balance.StatusDown {
		return false
	}
	m.passiveDown = true
	m.passiveAt = now
	return m.set(balance.StatusDown)
}

// coolAt returns when a node taken down by passive checks, in a
// configuration without active checks, comes back; ok is false when it is
// not waiting for that.
func (m *machine) coolAt(cooldown time.Duration) (at time.Time, ok bool) {
	if !m.passiveDown {
		return time.Time{}, false
	}
	return m.passiveAt.Add(cooldown), true
}

// cool returns a node taken down by passive checks to Unknown (eligible, no
// verdict: nothing checked it) once cooldown has passed since the trip. Only
// configurations without active checks use it.
func (m *machine) cool(now time.Time, cooldown time.Duration) (changed bool) {
	at, ok := m.coolAt(cooldown)
	if !ok || now.Before(at) {
		return false
	}
	m.passiveDown = false
	return m.set(balance.StatusUnknown)
}

// respec adapts the machine to new check settings while keeping its verdict:
// the failure run restarts (it counted another check); with passive checks
// off their verdict no longer holds; and without active checks a node is
// Unknown unless passive checks hold it DOWN (an active verdict is stale).
func (m *machine) respec(active, passive bool, attempts int) (changed bool) {
	m.attempts = max(attempts, 1)
	m.failures = 0
	if !passive {
		m.passiveDown = false
	}
	if !active && !m.passiveDown {
		return m.set(balance.StatusUnknown)
	}
	return false
}
