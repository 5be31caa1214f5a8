package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/nodebalancer/nodebalancer/internal/ha"
)

// newFrontendReleaseCommand removes the frontend addresses a killed `serve` left on
// its --frontend-interface (systemd's ExecStopPost runs it), so that a host whose
// process died stops answering ARP for addresses another host now holds.
func newFrontendReleaseCommand() *cobra.Command {
	var iface, pool string
	cmd := &cobra.Command{
		Use:   "frontend-release",
		Short: "Remove frontend addresses left on --frontend-interface by a serve that was killed",
		Long: `Remove from --frontend-interface and from lo every host address (/32, /128) inside
--frontend-pool, and the handover's nftables table (nodebalancer-handover). A serve that
stops cleanly removes them itself; one that is killed cannot, and the kernel would go on
answering ARP for addresses another host took over (lo holds them while a host drains
after a handover). The systemd unit runs this after every stop (ExecStopPost). Needs
CAP_NET_ADMIN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if iface == "" {
				return fmt.Errorf("--frontend-interface is required")
			}
			p, err := parsePrefixes("--frontend-pool", pool)
			if err != nil {
				return err
			}
			n, err := ha.RemoveStale(iface, p, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
			if err != nil {
				return fmt.Errorf("--frontend-interface %s: %w", iface, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d frontend address(es) from %s and lo\n", n, iface)
			return nil
		},
	}
	cmd.Flags().StringVar(&iface, "frontend-interface", "", "the interface serve's --frontend-interface named")
	cmd.Flags().StringVar(&pool, "frontend-pool", "127.0.1.0/24", "serve's --frontend-pool")
	return cmd
}
