package cli

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// Default columns of each object's table (--format picks others).
var (
	nbColumns     = []string{"id", "label", "region", "ipv4", "client_conn_throttle", "transfer.total"}
	configColumns = []string{"id", "port", "protocol", "algorithm", "stickiness", "check", "nodes_status.up", "nodes_status.down", "listener.state"}
	nodeColumns   = []string{"id", "label", "address", "weight", "mode", "status"}
	tokenColumns  = []string{"id", "label", "scopes", "created", "expiry", "token"}
)

// Command groups of `nodebalancers`, as its help lists them.
const (
	groupNB     = "nodebalancers"
	groupConfig = "configs"
	groupNode   = "nodes"
)

// spec describes one client subcommand.
type spec struct {
	use, short, long, example, group string
	args                             []string // names of the positional ids
	ids                              idSource // completion of those ids; nbTreeIDs when nil
}

// command builds a client subcommand running body.
func (g *globals) command(sp spec, body func(s *session) error) *cobra.Command {
	use := sp.use
	if len(sp.args) > 0 {
		use += " " + placeholders(sp.args)
	}
	src := sp.ids
	if src == nil {
		src = nbTreeIDs
	}
	return &cobra.Command{
		Use: use, Short: sp.short, Long: sp.long, Example: sp.example, GroupID: sp.group,
		Args:              idArgs(sp.args...),
		ValidArgsFunction: g.completeIDs(len(sp.args), src),
		RunE:              g.run(body),
	}
}

// listCommand prints every object of the list at path.
func (g *globals) listCommand(sp spec, path func(ids []int) string, columns []string) *cobra.Command {
	return g.command(sp, func(s *session) error {
		raws, err := s.c.list(s.ctx, path(s.ids))
		if err != nil {
			return err
		}
		return s.p.objects(columns, raws, true)
	})
}

// viewCommand prints the object at path.
func (g *globals) viewCommand(sp spec, path func(ids []int) string, columns []string) *cobra.Command {
	return g.command(sp, func(s *session) error {
		return s.send(http.MethodGet, path(s.ids), nil, columns)
	})
}

// deleteCommand deletes the object at path, printing nothing on success.
func (g *globals) deleteCommand(sp spec, path func(ids []int) string) *cobra.Command {
	return g.command(sp, func(s *session) error {
		_, err := s.c.do(s.ctx, http.MethodDelete, path(s.ids), nil)
		return err
	})
}

// send makes one request and prints the object it returns.
func (s *session) send(method, path string, body any, columns []string) error {
	raw, err := s.c.do(s.ctx, method, path, body)
	if err != nil {
		return err
	}
	return s.p.objects(columns, []json.RawMessage{raw}, false)
}

// newNodeBalancersCommand returns `nodebalancers`: linode-cli's NodeBalancer verbs
// against this balancer.
func newNodeBalancersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "nodebalancers",
		Aliases: []string{"nb"},
		Short:   "Manage NodeBalancers, their configs and nodes (linode-cli's verbs)",
		Long: `Manage the balancer's NodeBalancers, their configs (one per inbound port) and
their nodes (backends) over its Linode v4 API, with linode-cli's verbs.

Flags are named after the API's fields; '-' and '_' are interchangeable
(--check-interval is --check_interval). Updates send only the flags given.
Output is an aligned table; --json prints the API objects, --text prints
tab-separated rows (--no-headers, --delimiter) and --format picks the columns.`,
	}
	g := addGlobals(cmd)
	cmd.AddGroup(
		&cobra.Group{ID: groupNB, Title: "NodeBalancers:"},
		&cobra.Group{ID: groupConfig, Title: "Configs (one per inbound port):"},
		&cobra.Group{ID: groupNode, Title: "Nodes (the backends of a config):"},
	)
	cmd.AddCommand(g.nodeBalancerCommands()...)
	cmd.AddCommand(g.configCommands()...)
	cmd.AddCommand(g.nodeCommands()...)
	finishParent(cmd)
	return cmd
}

// nodeBalancerCommands are the verbs on NodeBalancers themselves.
func (g *globals) nodeBalancerCommands() []*cobra.Command {
	one := func(ids []int) string { return nbPath(ids[0]) }
	list := g.listCommand(spec{use: "list", short: "List NodeBalancers", group: groupNB},
		func([]int) string { return "/nodebalancers" }, nbColumns)

	view := g.viewCommand(spec{use: "view", short: "Show one NodeBalancer", group: groupNB, args: []string{argNB}},
		one, nbColumns)

	create := g.command(spec{use: "create", short: "Create a NodeBalancer", group: groupNB,
		long: "Create a NodeBalancer; its ipv4 address comes from the server's frontend pool.\n" +
			"Without --region it is created in the server's region, read from GET /v4/regions\n" +
			"(the API itself requires a region). Add ports with config-create.",
		example: "  nodebalancer nodebalancers create --label web-lb --client_conn_throttle 5 --tags prod --tags web"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), nbCreateFields)
			if err != nil {
				return err
			}
			if _, ok := body["region"]; !ok {
				if r, ok := s.serverRegion(); ok {
					body["region"] = r
				}
			}
			return s.send(http.MethodPost, "/nodebalancers", body, nbColumns)
		})
	addFields(create, nbCreateFields)

	update := g.command(spec{use: "update", short: "Change a NodeBalancer's label, throttle or tags", group: groupNB,
		args: []string{argNB}, example: "  nodebalancer nodebalancers update 1 --client-conn-throttle 10 --tags ''"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), nbUpdateFields)
			if err != nil {
				return err
			}
			if len(body) == 0 {
				return noChanges(nbUpdateFields)
			}
			return s.send(http.MethodPut, nbPath(s.ids[0]), body, nbColumns)
		})
	addFields(update, nbUpdateFields)

	del := g.deleteCommand(spec{use: "delete", short: "Delete a NodeBalancer with its configs and nodes", group: groupNB,
		args: []string{argNB}}, one)

	stats := g.command(spec{use: "stats", short: "Show a NodeBalancer's latest connections and traffic", group: groupNB,
		args: []string{argNB},
		long: "Show the latest sample of a NodeBalancer's statistics: connections, and traffic in\nand out (bits per second). --json prints the API's whole answer."},
		statsBody)

	fws := g.listCommand(spec{use: "firewalls", short: "List the firewalls guarding a NodeBalancer", group: groupNB,
		args: []string{argNB}}, func(ids []int) string { return nbPath(ids[0]) + "/firewalls" }, firewallColumns)

	return []*cobra.Command{list, view, create, update, del, stats, fws}
}

// serverRegion returns the region the server serves when it lists exactly one; ok is
// false otherwise (and the API's own "region is required" reaches the user).
func (s *session) serverRegion() (string, bool) {
	raws, err := s.c.list(s.ctx, "/regions")
	if err != nil || len(raws) != 1 {
		return "", false
	}
	var r struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raws[0], &r) != nil || r.ID == "" {
		return "", false
	}
	return r.ID, true
}

// statsAnswer is the API's statistics object (Linode's shape).
type statsAnswer struct {
	Data struct {
		Connections [][]float64 `json:"connections"`
		Traffic     struct {
			In  [][]float64 `json:"in"`
			Out [][]float64 `json:"out"`
		} `json:"traffic"`
	} `json:"data"`
	Title string `json:"title"`
}

// latest returns the newest [ms, value] sample of a series.
func latest(series [][]float64) (ms, v float64, ok bool) {
	for _, p := range series {
		if len(p) == 2 && (!ok || p[0] >= ms) {
			ms, v, ok = p[0], p[1], true
		}
	}
	return ms, v, ok
}

// statsBody prints the latest statistics sample of a NodeBalancer.
func statsBody(s *session) error {
	raw, err := s.c.do(s.ctx, http.MethodGet, nbPath(s.ids[0])+"/stats", nil)
	if ae, ok := errors.AsType[*apiError](err); ok && ae.Status == http.StatusNotFound {
		// The API answers 404 both for an unknown NodeBalancer and when the server
		// keeps no statistics: say which.
		if _, e := s.c.do(s.ctx, http.MethodGet, nbPath(s.ids[0]), nil); e == nil {
			ae.Hint = "NodeBalancer " + strconv.Itoa(s.ids[0]) + " exists, but this server does not serve its statistics."
		}
	}
	if err != nil {
		return err
	}
	if s.p.mode == modeJSON {
		return s.p.objects(nil, []json.RawMessage{raw}, false)
	}
	var st statsAnswer
	if err := json.Unmarshal(raw, &st); err != nil {
		return errors.New("the statistics answer is not Linode's shape: " + err.Error())
	}
	num := func(v float64, ok bool) string {
		if !ok {
			return ""
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	row := make([]string, 4)
	var newest float64
	for i, series := range [][][]float64{st.Data.Connections, st.Data.Traffic.In, st.Data.Traffic.Out} {
		ms, v, ok := latest(series)
		row[i+1] = num(v, ok)
		newest = max(newest, ms)
	}
	if newest > 0 {
		row[0] = time.UnixMilli(int64(newest)).UTC().Format("2006-01-02T15:04:05")
	}
	return s.p.table([]string{"time", "connections", "traffic.in", "traffic.out"}, [][]string{row})
}
