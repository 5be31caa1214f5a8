package stats

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// latencyBounds are the upper bounds of the check-duration histogram, in seconds:
// from loopback checks (sub-millisecond) to the 30 s check_timeout maximum.
var latencyBounds = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// checkLatency is one node's check-duration histogram, updated with atomics.
type checkLatency struct {
	counts [16]atomic.Uint64 // per bound of latencyBounds, then +Inf
	sumNs  atomic.Int64
}

// checkLatencies holds the histograms by node id. The health checker feeds them
// through the Observer methods of Stats; a scrape reads them.
type checkLatencies struct {
	mu sync.RWMutex
	m  map[int]*checkLatency
}

func (c *checkLatencies) get(nodeID int) *checkLatency {
	c.mu.RLock()
	h := c.m[nodeID]
	c.mu.RUnlock()
	if h != nil {
		return h
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]*checkLatency{}
	}
	if h = c.m[nodeID]; h == nil {
		h = &checkLatency{}
		c.m[nodeID] = h
	}
	return h
}

// CheckDone implements health.Observer: it records the check's duration.
func (s *Stats) CheckDone(_, nodeID int, latency time.Duration, _ error) {
	h := s.checks.get(nodeID)
	sec := latency.Seconds()
	i := 0
	for i < len(latencyBounds) && sec > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(latency))
}

// StatusChanged implements health.Observer. Status changes are counted by the
// checker itself (health.NodeStats.StatusChanges) and exported from there.
func (s *Stats) StatusChanged(int, int, model.NodeStatus, model.NodeStatus) {}

// SetAccessLog makes /metrics export a's drop counter.
func (s *Stats) SetAccessLog(a *AccessLog) { s.access = a }

// prune forgets the histograms of nodes that neither the state nor the checker knows.
func (c *checkLatencies) prune(inState map[int]bool, known func(id int) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.m {
		if !inState[id] && !known(id) {
			delete(c.m, id)
		}
	}
}
