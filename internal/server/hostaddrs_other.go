//go:build !linux

package server

import (
	"context"
	"log/slog"
)

// addrChanges has no change notices outside Linux: the caller re-reads the
// addresses on its ticker.
func addrChanges(context.Context, *slog.Logger) <-chan struct{} { return nil }
