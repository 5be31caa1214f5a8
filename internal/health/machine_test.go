package health

import (
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/balance"
)

// t0 is an arbitrary origin for the machine's fake clock.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestMachineGoesDownAfterExactlyAttemptsFailures(t *testing.T) {
	for _, attempts := range []int{1, 2, 3, 5, 30} {
		for _, startUp := range []bool{true, false} {
			m := newMachine(attempts)
			if m.status != balance.StatusUnknown {
				t.Fatalf("new machine with active checks: status %v, want Unknown", m.status)
			}
			want := balance.StatusUnknown
			if startUp {
				m.active(true, at(0))
				want = balance.StatusUp
			}
			for i := 1; i < attempts; i++ {
				if m.active(false, at(time.Duration(i)*time.Second)) || m.status != want {
					t.Fatalf("attempts=%d up=%v: after %d failures status %v, want %v", attempts, startUp, i, m.status, want)
				}
			}
			if !m.active(false, at(time.Hour)) || m.status != balance.StatusDown {
				t.Fatalf("attempts=%d up=%v: after %d failures status %v, want DOWN", attempts, startUp, attempts, m.status)
			}
			if m.active(false, at(2*time.Hour)) {
				t.Fatalf("attempts=%d: a further failure reported a change", attempts)
			}
		}
	}
}

func TestMachineOneSuccessBringsNodeBackUp(t *testing.T) {
	m := newMachine(3)
	for i := range 5 {
		m.active(false, at(time.Duration(i)*time.Second))
	}
	if m.status != balance.StatusDown {
		t.Fatalf("status %v, want DOWN", m.status)
	}
	if !m.active(true, at(10*time.Second)) || m.status != balance.StatusUp {
		t.Fatalf("after one success: status %v, want UP", m.status)
	}
	// The failure run starts again from zero.
	m.active(false, at(11*time.Second))
	m.active(false, at(12*time.Second))
	if m.status != balance.StatusUp {
		t.Fatalf("two failures after recovery: status %v, want UP", m.status)
	}
}

func TestMachineSuccessResetsFailureRun(t *testing.T) {
	m := newMachine(3)
	m.active(true, at(0))
	for round := range 4 {
		m.active(false, at(time.Duration(round)*time.Minute))
		m.active(false, at(time.Duration(round)*time.Minute+time.Second))
		m.active(true, at(time.Duration(round)*time.Minute+2*time.Second))
	}
	if m.status != balance.StatusUp {
		t.Fatalf("alternating 2 failures and a success with attempts 3: status %v, want UP", m.status)
	}
}

func TestMachinePassiveTrip(t *testing.T) {
	for _, from := range []balance.Status{balance.StatusUnknown, balance.StatusUp} {
		m := newMachine(3)
		m.status = from
		if !m.trip(at(5*time.Second)) || m.status != balance.StatusDown {
			t.Fatalf("trip from %v: status %v, want DOWN", from, m.status)
		}
		// A check that started before the trip does not bring it back.
		if m.active(true, at(4*time.Second)) || m.status != balance.StatusDown {
			t.Fatalf("in-flight success from before the trip changed status to %v", m.status)
		}
		if m.active(true, at(5*time.Second)) || m.status != balance.StatusDown {
			t.Fatalf("success of a check started at the trip's instant changed status to %v", m.status)
		}
		// One that started after it does.
		if !m.active(true, at(6*time.Second)) || m.status != balance.StatusUp {
			t.Fatalf("success after the trip: status %v, want UP", m.status)
		}
	}
}

func TestMachineTripOfDownNodeKeepsActiveRecovery(t *testing.T) {
	m := newMachine(1)
	m.active(false, at(0))
	if m.trip(at(5*time.Second)) || m.passiveDown {
		t.Fatal("trip of a node already DOWN by active checks changed it")
	}
	if !m.active(true, at(time.Second)) || m.status != balance.StatusUp {
		t.Fatalf("success: status %v, want UP", m.status)
	}
}

func TestMachinePassiveCooldown(t *testing.T) {
	const cooldown = 30 * time.Second
	m := newMachine(3)
	if m.status != balance.StatusUnknown {
		t.Fatalf("new machine: status %v, want Unknown", m.status)
	}
	if m.cool(at(time.Hour), cooldown) {
		t.Fatal("cool-down of a node that never tripped reported a change")
	}
	m.trip(at(10 * time.Second))
	if got, ok := m.coolAt(cooldown); !ok || !got.Equal(at(40*time.Second)) {
		t.Fatalf("coolAt = %v, %v; want %v, true", got, ok, at(40*time.Second))
	}
	if m.cool(at(40*time.Second-time.Nanosecond), cooldown) || m.status != balance.StatusDown {
		t.Fatalf("before the cool-down ended: status %v, want DOWN", m.status)
	}
	if !m.cool(at(40*time.Second), cooldown) || m.status != balance.StatusUnknown {
		t.Fatalf("when the cool-down ended: status %v, want Unknown (no check gave a verdict)", m.status)
	}
	if _, ok := m.coolAt(cooldown); ok {
		t.Fatal("still waiting for a cool-down after it ended")
	}
}

func TestMachineRespec(t *testing.T) {
	tests := []struct {
		name            string
		prepare         func(m *machine)
		active, passive bool
		want            balance.Status
	}{
		{"active DOWN, checks turned off", func(m *machine) { m.active(false, at(0)) }, false, true, balance.StatusUnknown},
		{"active UP, checks turned off", func(m *machine) { m.active(true, at(0)) }, false, true, balance.StatusUnknown},
		{"passive DOWN, checks turned off, passive on", func(m *machine) { m.trip(at(0)) }, false, true, balance.StatusDown},
		{"passive DOWN, everything off", func(m *machine) { m.trip(at(0)) }, false, false, balance.StatusUnknown},
		{"active DOWN, check kind changed", func(m *machine) { m.active(false, at(0)) }, true, true, balance.StatusDown},
		{"unknown, check kind changed", func(*machine) {}, true, true, balance.StatusUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(1)
			tt.prepare(&m)
			m.respec(tt.active, tt.passive, 3)
			if m.status != tt.want {
				t.Fatalf("status %v, want %v", m.status, tt.want)
			}
			if m.failures != 0 || m.attempts != 3 {
				t.Fatalf("failures=%d attempts=%d, want 0 and 3", m.failures, m.attempts)
			}
		})
	}
}
