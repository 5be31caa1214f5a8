package cli

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// clusterColumns are the columns of `cluster status`.
var clusterColumns = []string{"id", "self", "heartbeat_age_seconds", "applied_revision", "version", "api"}

// newClusterCommand returns `cluster`: the hosts sharing this balancer's store.
func newClusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "See the hosts that share this balancer's configuration",
	}
	g := addGlobals(cmd)
	status := g.command(spec{use: "status", short: "List the hosts: heartbeat age, applied store revision, version",
		long: `List the hosts serving this balancer's store, from GET /cluster on the host --url
names: each host's id, how long ago it last heart-beat, the store revision its data
plane has applied (compare with the store's revision, printed first), and its
version. With the embedded store there is one host.`,
		ids: tokenIDs},
		func(s *session) error {
			// GET /cluster is not under the Linode API root.
			c := *s.c
			c.base = strings.TrimSuffix(strings.TrimSuffix(c.base, "/v4"), "/v4beta")
			raw, err := c.do(s.ctx, http.MethodGet, "/cluster", nil)
			if err != nil {
				return err
			}
			var resp struct {
				HostID         string            `json:"host_id"`
				Store          string            `json:"store"`
				Revision       uint64            `json:"revision"`
				FrontendHolder string            `json:"frontend_holder"`
				Data           []json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(raw, &resp); err != nil {
				return err
			}
			if s.p.mode == modeJSON {
				_, err := s.p.w.Write(append(raw, '\n'))
				return err
			}
			if s.p.mode == modeTable {
				line := "store " + resp.Store + ", revision " + strconv.FormatUint(resp.Revision, 10) + ", answered by " + resp.HostID
				if resp.FrontendHolder != "" {
					line += ", frontend addresses held by " + resp.FrontendHolder
				}
				line += "\n"
				if _, err := s.p.w.Write([]byte(line)); err != nil {
					return err
				}
			}
			return s.p.objects(clusterColumns, resp.Data, true)
		})
	cmd.AddCommand(status)
	finishParent(cmd)
	return cmd
}
