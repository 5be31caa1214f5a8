package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/api"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

// testEnv is a real API server on loopback over a fresh bolt store, with its
// bootstrap ("*") token; commands run through Main as a user would run them.
type testEnv struct {
	t     *testing.T
	url   string
	token string
}

func newTestEnv(t *testing.T, mod ...func(*api.Options)) *testEnv {
	t.Helper()
	db := teststore.New(t, "127.0.1.0/24")
	tok, err := api.Bootstrap(db, "")
	if err != nil {
		t.Fatal(err)
	}
	o := api.Options{DB: db, Policy: model.Policy{Region: "local", BackendRanges: model.DefaultBackendRanges()},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mod {
		m(&o)
	}
	srv := httptest.NewServer(api.New(o))
	t.Cleanup(srv.Close)
	return &testEnv{t: t, url: srv.URL, token: tok}
}

// result is what one command run did.
type result struct {
	code           int
	stdout, stderr string
}

// runRaw runs the command line exactly as given.
func runRaw(args ...string) result {
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// run runs a client command against the env's server with its token.
func (e *testEnv) run(args ...string) result {
	return runRaw(append(args, "--url", e.url, "--token", e.token)...)
}

// ok runs a command that must succeed without a word on stderr and returns stdout.
func (e *testEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 || r.stderr != "" {
		e.t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.stderr)
	}
	return r.stdout
}

// object runs a command with --json and decodes the object it prints.
func (e *testEnv) object(args ...string) map[string]any {
	e.t.Helper()
	var m map[string]any
	out := e.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("%v --json printed %q: %v", args, out, err)
	}
	return m
}

// objects runs a list command with --json and decodes the array it prints.
func (e *testEnv) objects(args ...string) []map[string]any {
	e.t.Helper()
	var l []map[string]any
	out := e.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		e.t.Fatalf("%v --json printed %q: %v", args, out, err)
	}
	return l
}

// id returns an object's id as the command-line argument.
func id(m map[string]any) string { return fmt.Sprint(m["id"]) }

// lines splits output into its lines, without the final newline.
func lines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}
