// Package cli is nodebalancer's command line: `serve` and `demo`, which run the
// balancer, and the client commands modelled on linode-cli's verbs, which talk to a
// running balancer over its API like any other client.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries the exit code of a command that already printed its message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Main runs the command line with args and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root := NewRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	return 0
}

// NewRoot returns the whole command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "nodebalancer",
		Short:         "A self-hosted load balancer driven by Linode's NodeBalancer API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newDemoCommand(), newFrontendReleaseCommand())
	root.AddCommand(newNodeBalancersCommand(), newTokenCommand(), newFirewallsCommand(), newClusterCommand())
	return root
}
