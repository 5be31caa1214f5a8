package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Scaffolding shared by the client commands (`nodebalancers`, `token`): the global
// flags, turning failures into messages and exit codes, positional ids, flag
// spellings and shell completion of ids.

// Defaults and environment of the client commands.
const (
	defaultURL = "http://127.0.0.1:8080"
	envURL     = "NODEBALANCER_URL"
	envToken   = "NODEBALANCER_TOKEN"
)

// Exit codes: 1 when the request failed, 2 when the command line was wrong.
const (
	exitFailed = 1
	exitUsage  = 2
)

// globals are the flags every client command takes.
type globals struct {
	url, token        string
	json, text        bool
	noHeaders         bool
	delimiter, format string
}

// addGlobals registers the global flags as persistent flags of a client command's
// parent. The token's default is left empty so `--help` never shows a secret.
func addGlobals(cmd *cobra.Command) *globals {
	g := &globals{}
	fs := cmd.PersistentFlags()
	fs.StringVar(&g.url, "url", defaultURL, "the balancer's URL (env "+envURL+")")
	fs.StringVar(&g.token, "token", "", "API token (env "+envToken+")")
	fs.BoolVar(&g.json, "json", false, "print the API objects as JSON")
	fs.BoolVar(&g.text, "text", false, "print delimiter-separated text (tab by default)")
	fs.BoolVar(&g.noHeaders, "no-headers", false, "leave out the header row")
	fs.StringVar(&g.delimiter, "delimiter", "\t", "column delimiter of --text (implies --text)")
	fs.StringVar(&g.format, "format", "", "comma-separated columns to show, any field of the API object (e.g. id,label,nodes_status.up)")
	return g
}

// resolve picks each setting: the flag when given, else the environment, else the
// default.
func (g *globals) resolve(cmd *cobra.Command) (url, token string) {
	url, token = g.url, g.token
	if !cmd.Flags().Changed("url") {
		if v := os.Getenv(envURL); v != "" {
			url = v
		}
	}
	if !cmd.Flags().Changed("token") {
		token = os.Getenv(envToken)
	}
	return url, token
}

// printer builds the output printer from the flags.
func (g *globals) printer(cmd *cobra.Command) (*printer, error) {
	p := &printer{w: cmd.OutOrStdout(), headers: !g.noHeaders, delim: g.delimiter}
	text := g.text || cmd.Flags().Changed("delimiter")
	switch {
	case g.json && text:
		return nil, usageErrorf("--json and --text (or --delimiter) cannot be used together")
	case g.json:
		p.mode = modeJSON
	case text:
		p.mode = modeText
	default:
		p.mode = modeTable
		p.color = useColor(p.w, os.Getenv)
	}
	if g.delimiter == "" {
		return nil, usageErrorf("--delimiter must not be empty")
	}
	if cmd.Flags().Changed("format") {
		for c := range strings.SplitSeq(g.format, ",") {
			if c = strings.TrimSpace(c); c != "" {
				p.columns = append(p.columns, c)
			}
		}
		if len(p.columns) == 0 {
			return nil, usageErrorf("--format must name at least one column")
		}
	}
	return p, nil
}

// session is what a command's body gets: its context, client, printer and the
// positional ids already parsed.
type session struct {
	ctx context.Context
	cmd *cobra.Command
	c   *client
	p   *printer
	ids []int
}

// run wraps a command's body: it builds the client and printer from the flags and
// turns whatever fails into a message on stderr and an exit code.
func (g *globals) run(body func(s *session) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		url, token := g.resolve(cmd)
		err := func() error {
			p, err := g.printer(cmd)
			if err != nil {
				return err
			}
			c, err := newClient(url, token)
			if err != nil {
				return err
			}
			ids := make([]int, len(args))
			for i, a := range args {
				ids[i], _ = strconv.Atoi(a) // checked by idArgs
			}
			return body(&session{ctx: cmd.Context(), cmd: cmd, c: c, p: p, ids: ids})
		}()
		return report(cmd, err, token == "")
	}
}

// usageError is a mistake on the command line; it exits with exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// report prints err for a person and returns the exitError carrying its code: API
// refusals as one "field: reason" line each, usage mistakes with a pointer to --help.
func report(cmd *cobra.Command, err error, noToken bool) error {
	if err == nil {
		return nil
	}
	w := cmd.ErrOrStderr()
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(w, "Error: %s\nRun '%s --help' for usage.\n", ue.msg, cmd.CommandPath())
		return exitError{exitUsage}
	}
	if ae, ok := errors.AsType[*apiError](err); ok {
		for _, l := range ae.lines() {
			fmt.Fprintln(w, safe(l))
		}
		if ae.Hint != "" {
			fmt.Fprintln(w, ae.Hint)
		}
		if ae.Status == http.StatusUnauthorized && noToken {
			fmt.Fprintf(w, "No token was given: pass --token or set %s.\n", envToken)
		}
		return exitError{exitFailed}
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(w, "Interrupted.")
		return exitError{exitFailed}
	}
	fmt.Fprintf(w, "Error: %s\n", safe(err.Error()))
	return exitError{exitFailed}
}

// flagError rewords pflag's parse errors so they name the flag plainly.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if ie, ok := errors.AsType[*pflag.InvalidValueError](err); ok {
		name := "--" + ie.GetFlag().Name
		switch ie.GetFlag().Value.Type() {
		case "int":
			msg = fmt.Sprintf("%s must be a number (got %q)", name, ie.GetValue())
		case "bool":
			msg = fmt.Sprintf("%s must be true or false (got %q)", name, ie.GetValue())
		}
	}
	return report(cmd, &usageError{msg}, false)
}

// idArgs checks a command's positional ids: exactly one per name, each a positive
// integer.
func idArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		var err error
		switch {
		case len(args) < len(names):
			err = usageErrorf("missing %s", placeholders(names[len(args):]))
		case len(args) > len(names):
			err = usageErrorf("too many arguments: %s takes %s", cmd.Name(), placeholders(names))
		}
		for i, a := range args {
			if err != nil {
				break
			}
			if n, e := strconv.Atoi(a); e != nil || n <= 0 {
				err = usageErrorf("%s must be a positive number (got %q)", names[i], a)
			}
		}
		return report(cmd, err, false)
	}
}

// placeholders spells positional names as usage does: "<nodebalancer-id> <config-id>".
func placeholders(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "<" + n + ">"
	}
	return strings.Join(out, " ")
}

// Positional id names.
const (
	argNB     = "nodebalancer-id"
	argConfig = "config-id"
	argNode   = "node-id"
	argToken  = "token-id"
)

// hyphenated are the flags spelled with '-' (the CLI's own); all others use the
// API's '_' field names. Either spelling is accepted on the command line.
var hyphenated = map[string]string{"no_headers": "no-headers"}

// normalizeFlag maps "client-conn-throttle" and "client_conn_throttle" to the one
// registered spelling.
func normalizeFlag(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	u := strings.ReplaceAll(name, "-", "_")
	if h, ok := hyphenated[u]; ok {
		return pflag.NormalizedName(h)
	}
	return pflag.NormalizedName(u)
}

// finishParent completes a parent command once its children are added: flag
// spellings and flag errors for the whole subtree, help when run bare, and a usage
// error (with suggestions) for an unknown subcommand.
func finishParent(cmd *cobra.Command) {
	cmd.SetGlobalNormalizationFunc(normalizeFlag)
	cmd.SetFlagErrorFunc(flagError)
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return report(cmd, &usageError{msg}, false)
	}
}

// idSource names the list a positional id is completed from, given the ids before
// it, and the field shown beside each id.
type idSource func(ids []int) (path, desc string)

// nbTreeIDs completes NodeBalancer ids, then config ids of the first, then node ids.
func nbTreeIDs(ids []int) (string, string) {
	switch len(ids) {
	case 0:
		return "/nodebalancers", "label"
	case 1:
		return configsPath(ids[0]), "port"
	default:
		return nodesPath(ids[0], ids[1]), "label"
	}
}

// tokenIDs completes token ids.
func tokenIDs([]int) (string, string) { return "/profile/tokens", "label" }

// completeIDs completes the next positional id of a command taking n ids by asking
// the API (with a short timeout; on any failure it offers nothing).
func (g *globals) completeIDs(n int, src idSource) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ids := make([]int, len(args))
		for i, a := range args {
			v, err := strconv.Atoi(a)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			ids[i] = v
		}
		url, token := g.resolve(cmd)
		c, err := newClient(url, token)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c.http.Timeout = 3 * time.Second
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		path, desc := src(ids)
		raws, err := c.list(ctx, path)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		out := make([]cobra.Completion, 0, len(raws))
		for _, raw := range raws {
			obj, err := decodeObject(raw)
			if err != nil {
				continue
			}
			out = append(out, cobra.CompletionWithDesc(cellText(obj["id"]), safe(cellText(obj[desc]))))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
