//go:build !linux

package procs

import "errors"

func newSampler() (sampler, error) {
	return nil, errors.New("thread statistics are read on Linux only")
}

// newLimit's reader does not know the CPUs here: the controller keeps the maximum
// it started with.
func newLimit() func() (int, bool) { return func() (int, bool) { return 0, false } }
