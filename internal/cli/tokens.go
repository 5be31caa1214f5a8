package cli

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// tokenCreateFields are the flags of `token create` (expiry is converted first).
var tokenCreateFields = []field{
	{name: "label", usage: "what the token is for"},
	{name: "scopes", usage: "'*' or comma-separated entries such as nodebalancers:read_only (default: the scopes of the token used)"},
}

// newTokenCommand returns `token`: create, list and revoke API tokens.
func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Manage API tokens (personal access tokens)",
		Long: `Create, list and revoke the balancer's API tokens.

A token's secret is shown once, by create. Managing tokens needs a token with
nodebalancers:read_write or '*' scopes, and a token can grant no more than its own.`,
	}
	g := addGlobals(cmd)

	create := g.command(spec{use: "create", short: "Create a token and print its secret (shown only this once)",
		example: "  nodebalancer token create --label ci --scopes nodebalancers:read_only --expiry 30d"},
		func(s *session) error {
			body, err := bodyFromFlags(s.cmd.Flags(), tokenCreateFields)
			if err != nil {
				return err
			}
			if s.cmd.Flags().Changed("expiry") {
				v, _ := s.cmd.Flags().GetString("expiry")
				if body["expiry"], err = expiryValue(v, time.Now()); err != nil {
					return err
				}
			}
			if err := s.send(http.MethodPost, "/profile/tokens", body, tokenColumns); err != nil {
				return err
			}
			fmt.Fprintln(s.cmd.ErrOrStderr(), "Save the token now: its secret is not shown again.")
			return nil
		})
	addFields(create, tokenCreateFields)
	create.Flags().String("expiry", "", "when the token stops working: a lifetime (30d, 12h) or a UTC time YYYY-MM-DDTHH:MM:SS (default: never)")

	list := g.listCommand(spec{use: "list", short: "List tokens (secrets show only their first characters)", ids: tokenIDs},
		func([]int) string { return "/profile/tokens" }, tokenColumns)

	revoke := g.deleteCommand(spec{use: "revoke", short: "Revoke a token", args: []string{argToken}, ids: tokenIDs},
		func(ids []int) string { return tokenPath(ids[0]) })
	revoke.Aliases = []string{"delete"}

	cmd.AddCommand(create, list, revoke)
	finishParent(cmd)
	return cmd
}
