package cli

import (
	"net/http"

	"github.com/spf13/cobra"
)

// configCommands are the config-* verbs: one config per inbound port.
func (g *globals) configCommands() []*cobra.Command {
	nbCfg := []string{argNB, argConfig}
	one := func(ids []int) string { return configPath(ids[0], ids[1]) }

	list := g.listCommand(spec{use: "configs-list", short: "List a NodeBalancer's configs", group: groupConfig,
		args: []string{argNB}}, func(ids []int) string { return configsPath(ids[0]) }, configColumns)

	view := g.viewCommand(spec{use: "config-view", short: "Show one config", group: groupConfig, args: nbCfg},
		one, configColumns)

	create := g.command(spec{use: "config-create", short: "Add a config (an inbound port), optionally with nodes", group: groupConfig,
		args: []string{argNB},
		example: `  nodebalancer nodebalancers config-create 1 --port 80 --check http --check_path /healthz \
      --node 'label=web1,address=192.168.1.10:80' --node 'label=web2,address=192.168.1.11:80'
  nodebalancer nodebalancers config-create 1 --port 443 --protocol https \
      --ssl_cert @cert.pem --ssl_key @key.pem`},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), configFields())
			if err != nil {
				return err
			}
			if s.cmd.Flags().Changed("node") {
				if body["nodes"], err = nodesFromFlag(s.cmd.Flags()); err != nil {
					return err
				}
			}
			return s.send(http.MethodPost, configsPath(s.ids[0]), body, configColumns)
		})
	addFields(create, configFields())
	create.Flags().StringArray("node", nil, nodeFlagUsage)

	update := g.command(spec{use: "config-update", short: "Change a config's settings", group: groupConfig, args: nbCfg,
		example: "  nodebalancer nodebalancers config-update 1 2 --algorithm leastconn --check-passive=false"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), configFields())
			if err != nil {
				return err
			}
			if len(body) == 0 {
				return noChanges(configFields())
			}
			return s.send(http.MethodPut, one(s.ids), body, configColumns)
		})
	addFields(update, configFields())

	del := g.deleteCommand(spec{use: "config-delete", short: "Delete a config and its nodes", group: groupConfig, args: nbCfg}, one)

	rebuild := g.command(spec{use: "config-rebuild", short: "Replace a config's settings and whole node set at once", group: groupConfig,
		args: nbCfg,
		long: `Replace a config's node set in one request, optionally changing its settings too.

Give every node the config keeps with --node, as comma-separated key=value pairs
of the node's fields (label, address, weight, mode), plus id=N to keep an existing
node: its fields not given keep their values. Nodes without id are created; the
config's nodes not listed are DELETED. Config flags not given keep their values.`,
		example: `  nodebalancer nodebalancers config-rebuild 1 2 \
      --node 'id=3,weight=100' \
      --node 'label=web3,address=192.168.1.12:80,weight=50,mode=accept'`},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), configFields())
			if err != nil {
				return err
			}
			if !s.cmd.Flags().Changed("node") {
				return usageErrorf("give --node for every node the config keeps: nodes not listed are deleted")
			}
			if body["nodes"], err = nodesFromFlag(s.cmd.Flags()); err != nil {
				return err
			}
			return s.send(http.MethodPost, one(s.ids)+"/rebuild", body, configColumns)
		})
	addFields(rebuild, configFields())
	rebuild.Flags().StringArray("node", nil, nodeFlagUsage)

	return []*cobra.Command{list, view, create, update, del, rebuild}
}
