package cli

import (
	"strings"
	"testing"
)

func TestFailuresPrintTheReasonAndExitNonZero(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb, cfg := fixture(e)
	tests := []struct {
		name string
		args []string
		code int
		// every line the error must print (prefix match on the whole stderr when one)
		stderr []string
	}{
		{"API refuses a weight", []string{"nodebalancers", "node-create", nb, cfg, "--label", "web3", "--address", "127.0.0.4:80", "--weight", "300"},
			1, []string{"weight: weight must be between 1 and 255"}},
		{"API names every field", []string{"nodebalancers", "node-create", nb, cfg, "--label", "x", "--address", "8.8.8.8:80"},
			1, []string{"label: label must be 3-32 characters", "address: "}},
		{"API refuses another region", []string{"nodebalancers", "create", "--region", "us-east"},
			1, []string{"region: region must be 'local'"}},
		{"unknown id", []string{"nodebalancers", "view", "4242"}, 1, []string{"Not found"}},
		{"unknown config", []string{"nodebalancers", "config-view", nb, "4242"}, 1, []string{"Not found"}},
		{"weight not a number", []string{"nodebalancers", "node-update", nb, cfg, "1", "--weight", "heavy"},
			2, []string{`Error: --weight must be a number (got "heavy")`, "Run 'nodebalancer nodebalancers node-update --help' for usage."}},
		{"dashed spelling in the message is the field's", []string{"nodebalancers", "config-update", nb, cfg, "--check-interval", "x"},
			2, []string{`Error: --check_interval must be a number (got "x")`}},
		{"bool not a bool", []string{"nodebalancers", "config-update", nb, cfg, "--check_passive=maybe"},
			2, []string{`Error: --check_passive must be true or false (got "maybe")`}},
		{"unknown flag", []string{"nodebalancers", "list", "--labl", "x"}, 2, []string{"Error: unknown flag: --labl"}},
		{"missing argument", []string{"nodebalancers", "config-view", nb}, 2, []string{"Error: missing <config-id>"}},
		{"too many arguments", []string{"nodebalancers", "view", nb, "2"}, 2, []string{"Error: too many arguments: view takes <nodebalancer-id>"}},
		{"id not a number", []string{"nodebalancers", "view", "web"}, 2, []string{`Error: nodebalancer-id must be a positive number (got "web")`}},
		{"unknown subcommand", []string{"nodebalancers", "lsit"}, 2, []string{`Error: unknown command "lsit" for "nodebalancer nodebalancers"; did you mean list?`}},
		{"update without changes", []string{"nodebalancers", "node-update", nb, cfg, "1"},
			2, []string{"Error: nothing to change: give at least one of --label, --address, --weight, --mode"}},
		{"json and text", []string{"nodebalancers", "list", "--json", "--text"}, 2, []string{"Error: --json and --text (or --delimiter) cannot be used together"}},
		{"bad --node", []string{"nodebalancers", "config-rebuild", nb, cfg, "--node", "label=a,weight=lots"},
			2, []string{`Error: --node "label=a,weight=lots": weight must be a number (got "lots")`}},
		{"bad --expiry", []string{"token", "create", "--expiry", "-5d"}, 2, []string{`Error: --expiry "-5d" must be in the future`}},
		{"API refuses an expiry", []string{"token", "create", "--expiry", "soon"}, 1, []string{"expiry: expiry must be a UTC time"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(tc.args...)
			if r.code != tc.code || r.stdout != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q", r.code, tc.code, r.stdout, r.stderr)
			}
			got := lines(r.stderr)
			if len(got) < len(tc.stderr) {
				t.Fatalf("stderr %q, want lines starting %q", got, tc.stderr)
			}
			for i, want := range tc.stderr {
				if !strings.HasPrefix(got[i], want) {
					t.Fatalf("stderr line %d %q, want it to start %q (all: %q)", i, got[i], want, got)
				}
			}
		})
	}
}

func TestConnectionRefusedNamesTheURL(t *testing.T) {
	t.Parallel()
	url := closedURL(t)
	r := runRaw("nodebalancers", "list", "--url", url, "--token", "x")
	want := "Error: cannot connect to " + url + ": connection refused"
	if r.code != 1 || !strings.HasPrefix(r.stderr, want) || r.stdout != "" {
		t.Fatalf("got %+v, want stderr starting %q", r, want)
	}
	r = runRaw("nodebalancers", "list", "--url", "ftp://127.0.0.1:21")
	if r.code != 2 || !strings.Contains(r.stderr, `--url "ftp://127.0.0.1:21" is not an http(s) URL`) {
		t.Fatalf("bad --url: %+v", r)
	}
}

// These tests set the environment, so they do not run in parallel.

func TestMissingTokenGetsTheAPIs401AndAHint(t *testing.T) {
	e := newTestEnv(t)
	t.Setenv(envToken, "")
	r := runRaw("nodebalancers", "list", "--url", e.url)
	if r.code != 1 || r.stderr != "Invalid Token\nNo token was given: pass --token or set NODEBALANCER_TOKEN.\n" {
		t.Fatalf("no token: %+v", r)
	}
	r = runRaw("nodebalancers", "list", "--url", e.url, "--token", "wrong-token-0123456789")
	if r.code != 1 || r.stderr != "Invalid Token\n" {
		t.Fatalf("wrong token: %+v", r)
	}
}

func TestFlagsWinOverTheEnvironment(t *testing.T) {
	e := newTestEnv(t)
	e.ok("nodebalancers", "create", "--label", "env-lb")
	dead := closedURL(t)
	t.Setenv(envURL, dead)
	t.Setenv(envToken, "not-the-token-0123456789")

	// Flags given: the environment is ignored.
	if r := e.run("nodebalancers", "list", "--text", "--no-headers", "--format", "label"); r.code != 0 || r.stdout != "env-lb\n" {
		t.Fatalf("with flags: %+v", r)
	}
	// No --url: the environment's URL is used (and named when it is down).
	if r := runRaw("nodebalancers", "list", "--token", e.token); r.code != 1 || !strings.Contains(r.stderr, dead) {
		t.Fatalf("env URL: %+v", r)
	}
	// No --token: the environment's token is used.
	if r := runRaw("nodebalancers", "list", "--url", e.url); r.code != 1 || r.stderr != "Invalid Token\n" {
		t.Fatalf("env token: %+v", r)
	}
	t.Setenv(envURL, strings.TrimPrefix(e.url, "http://")) // a scheme is optional
	t.Setenv(envToken, e.token)
	if r := runRaw("nodebalancers", "list", "--text", "--no-headers", "--format", "label"); r.code != 0 || r.stdout != "env-lb\n" {
		t.Fatalf("from the environment alone: %+v", r)
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb, cfg := fixture(e)

	r := runRaw("completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "bash completion") || !strings.Contains(r.stdout, "nodebalancer") {
		t.Fatalf("completion bash: exit %d, %d bytes", r.code, len(r.stdout))
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"subcommands", []string{"nodebalancers", "config-"},
			[]string{"config-create", "config-delete", "config-rebuild", "config-update", "config-view"}},
		{"NodeBalancer ids from the API", []string{"nodebalancers", "view", "--url", e.url, "--token", e.token, ""},
			[]string{nb + "\tfixture"}},
		{"config ids", []string{"nodebalancers", "nodes-list", nb, "--url", e.url, "--token", e.token, ""},
			[]string{cfg + "\t8080"}},
		{"no ids past the last", []string{"nodebalancers", "view", nb, "--url", e.url, "--token", e.token, ""}, nil},
		{"enum values", []string{"nodebalancers", "config-update", nb, cfg, "--protocol", ""}, []string{"http", "https", "tcp", "udp"}},
		{"node modes", []string{"nodebalancers", "node-create", nb, cfg, "--mode", ""}, []string{"accept", "reject", "drain", "backup"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runRaw(append([]string{"__complete"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var got []string
			for _, l := range lines(r.stdout) {
				if strings.HasPrefix(l, ":") {
					break // the directive
				}
				name, _, _ := strings.Cut(l, "\t")
				if strings.HasPrefix(tc.args[len(tc.args)-1], "config-") {
					l = name
				}
				got = append(got, l)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("completions %q, want %q", got, tc.want)
			}
		})
	}
}
