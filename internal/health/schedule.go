package health

import (
	"math/rand/v2"
	"time"
)

// Bounds of the random delays that spread checks (see the package doc).
const (
	maxInitialDelay = 500 * time.Millisecond
	maxJitter       = 500 * time.Millisecond
)

// initialDelayMax is the bound of the random delay before a node's first
// check: soon, but not every node of a new configuration at once.
func initialDelayMax(interval time.Duration) time.Duration {
	return min(interval/2, maxInitialDelay)
}

// jitterMax is J, the bound of the random delay added to each scheduled
// check. It stays under half the slack between timeout and interval so that a
// check that ends in time never pushes the next one off its grid point.
func jitterMax(interval, timeout time.Duration) time.Duration {
	return max(0, min(interval/20, (interval-timeout)/2, maxJitter))
}

// randBelow returns a uniformly random duration in [0, d), or 0 when d ≤ 0.
func randBelow(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// nextCheck returns when the check after one that started at start and ended
// at end should start, for a node whose grid is base+k·interval (k any
// integer): the first grid point strictly after start, plus jitter, or end
// itself if that grid point passed while the check ran, so that checks never
// overlap and a late check is followed at once rather than an interval later.
func nextCheck(base time.Time, interval time.Duration, start, end time.Time, jitter time.Duration) time.Time {
	d := start.Sub(base)
	q := d / interval
	if d%interval != 0 && d < 0 {
		q-- // floor, not truncation, before base
	}
	slot := base.Add((q + 1) * interval)
	if slot.Before(end) {
		return end
	}
	return slot.Add(jitter)
}

// DefaultMaxConcurrentChecks bounds how many active checks run at once: each runs in
// its own short-lived goroutine, and no goroutine waits between a node's checks.
const DefaultMaxConcurrentChecks = 1024

// due is one scheduled check: node n's next check of run gen, at at.
type due struct {
	at  time.Time
	n   *Node
	gen uint64
}

// timerHeap is a min-heap of due checks by time: the checker's one timer waits for
// the earliest, however many nodes there are.
type timerHeap []due

func (h timerHeap) less(i, j int) bool { return h[i].at.Before(h[j].at) }

func (h *timerHeap) push(d due) {
	*h = append(*h, d)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *timerHeap) pop() due {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = due{}
	s = s[:last]
	for i := 0; ; {
		c := 2*i + 1
		if c >= len(s) {
			break
		}
		if c+1 < len(s) && s.less(c+1, c) {
			c++
		}
		if !s.less(c, i) {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}
