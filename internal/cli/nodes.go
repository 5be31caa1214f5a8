package cli

import (
	"net/http"

	"github.com/spf13/cobra"
)

// nodeCommands are the node-* verbs on a config's backends.
func (g *globals) nodeCommands() []*cobra.Command {
	nbCfg := []string{argNB, argConfig}
	nbCfgNode := []string{argNB, argConfig, argNode}
	one := func(ids []int) string { return nodePath(ids[0], ids[1], ids[2]) }
	statusNote := "\nstatus is UP, DOWN or Unknown (no verdict: not checked yet, or check none) as the\nhealth checks see the node; an Unknown node takes traffic. On a terminal UP is\ngreen, DOWN red and Unknown yellow (NO_COLOR turns colour off)."

	list := g.listCommand(spec{use: "nodes-list", short: "List a config's nodes with their status", group: groupNode,
		args: nbCfg, long: "List a config's nodes." + statusNote},
		func(ids []int) string { return nodesPath(ids[0], ids[1]) }, nodeColumns)

	view := g.viewCommand(spec{use: "node-view", short: "Show one node", group: groupNode, args: nbCfgNode,
		long: "Show one node." + statusNote}, one, nodeColumns)

	create := g.command(spec{use: "node-create", short: "Add a node (backend) to a config", group: groupNode, args: nbCfg,
		example: "  nodebalancer nodebalancers node-create 1 2 --label web1 --address 192.168.1.10:80 --weight 50"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), nodeFields)
			if err != nil {
				return err
			}
			return s.send(http.MethodPost, nodesPath(s.ids[0], s.ids[1]), body, nodeColumns)
		})
	addFields(create, nodeFields)

	update := g.command(spec{use: "node-update", short: "Change a node's label, address, weight or mode", group: groupNode,
		args: nbCfgNode, example: "  nodebalancer nodebalancers node-update 1 2 3 --mode drain"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), nodeFields)
			if err != nil {
				return err
			}
			if len(body) == 0 {
				return noChanges(nodeFields)
			}
			return s.send(http.MethodPut, one(s.ids), body, nodeColumns)
		})
	addFields(update, nodeFields)

	del := g.deleteCommand(spec{use: "node-delete", short: "Remove a node from a config", group: groupNode, args: nbCfgNode}, one)

	return []*cobra.Command{list, view, create, update, del}
}
