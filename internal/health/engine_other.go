//go:build !linux

package health

import (
	"context"
	"net/netip"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// engine is Linux's epoll check engine; elsewhere checks run on goroutines.
type engine struct{}

func newEngine(*Checker, netip.Addr) *engine { return nil }
func (*engine) handles(model.Check) bool     { return false }
func (*engine) wake()                        {}
func (*engine) run(context.Context)          {}
