//go:build !linux

package procs

import "errors"

func newSampler() (sampler, error) {
	return nil, errors.New("thread statistics are read on Linux only")
}
