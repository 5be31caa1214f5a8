//go:build linux

package httpproxy

import "testing"

// holdWorkers keeps every pool at the workers it has (until the test ends) and
// returns how many of them wait idle.
func holdWorkers(t *testing.T) int32 {
	pollers.once.Do(startPollers)
	var idle int32
	for _, p := range pollers.ps {
		w := p.pool
		old := w.max.Load()
		w.max.Store(w.running.Load())
		t.Cleanup(func() { w.max.Store(old) })
		idle += w.nidle.Load()
	}
	return idle
}
