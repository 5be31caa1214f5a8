package balance

import (
	"fmt"
	"sync/atomic"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Status is the health of a backend node as the health checker last saw it.
// The zero value is StatusUnknown, which counts as eligible so that a fresh
// configuration serves at once, before the first check has completed.
type Status int32

// Node statuses, with the strings the Linode API shows.
const (
	StatusUnknown Status = iota // not checked yet; eligible (optimistic start)
	StatusUp                    // passed its checks; eligible
	StatusDown                  // failed its checks; never eligible, not even for sticky clients
)

// String returns the API spelling: "Unknown", "UP" or "DOWN".
func (s Status) String() string {
	switch s {
	case StatusUnknown:
		return string(model.StatusUnknown)
	case StatusUp:
		return string(model.StatusUp)
	case StatusDown:
		return string(model.StatusDown)
	}
	return fmt.Sprintf("Status(%d)", int32(s))
}

// Mode is what a node accepts, as set by the operator through the API.
type Mode uint8

// Node modes. The zero value is ModeAccept, the API's default.
const (
	// ModeAccept takes new traffic while the node is not DOWN.
	ModeAccept Mode = iota
	// ModeReject takes no new traffic at all; stickiness to it is ignored.
	ModeReject
	// ModeDrain takes only clients whose stickiness already points to it.
	ModeDrain
	// ModeBackup takes new traffic only while no accept node is eligible.
	ModeBackup
)

// modeNames ties each Mode to the model's spelling, the one place the names live.
var modeNames = [...]model.Mode{ModeAccept: model.ModeAccept, ModeReject: model.ModeReject, ModeDrain: model.ModeDrain, ModeBackup: model.ModeBackup}

// String returns the API spelling of the mode.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return string(modeNames[m])
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses the API spelling of a mode ("accept", "reject", "drain",
// "backup"). Matching is exact, as the API's is.
func ParseMode(s string) (Mode, error) {
	for i, name := range modeNames {
		if s == string(name) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown node mode %q", s)
}

// State is the live, mutable state of one backend node: its health status and
// its count of active connections. One State is shared by every Pool snapshot
// that contains the node, so both survive a configuration change (re-weighting
// a node does not forget that it is DOWN or that it carries 40 connections).
// The zero value is ready to use (StatusUnknown, no connections). All methods
// are safe for concurrent use and never block.
type State struct {
	status atomic.Int32
	active atomic.Int64
}

// Status returns the node's current status.
func (s *State) Status() Status { return Status(s.status.Load()) }

// SetStatus records a new status and reports whether it differs from the
// previous one. After a change the caller should call Refresh on every Pool
// containing the node so that their pick tables follow.
func (s *State) SetStatus(st Status) (changed bool) {
	return Status(s.status.Swap(int32(st))) != st
}

// Acquire counts one more active connection to the node. Call it once the
// node has been chosen, and Release when that connection ends.
func (s *State) Acquire() { s.active.Add(1) }

// Release counts one fewer active connection to the node.
func (s *State) Release() { s.active.Add(-1) }

// Active returns the number of active connections to the node.
func (s *State) Active() int64 { return s.active.Load() }
