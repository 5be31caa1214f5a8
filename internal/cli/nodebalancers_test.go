package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/api"
)

func TestNodeBalancerCreateViewUpdateDeleteRoundTrip(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb := e.object("nodebalancers", "create", "--label", "web-lb", "--tags", "prod", "--tags", "web", "--client_conn_throttle", "5")
	if nb["label"] != "web-lb" || nb["client_conn_throttle"] != 5.0 || nb["region"] != "local" ||
		jsonText(nb["tags"]) != `["prod","web"]` || nb["ipv4"] != "127.0.1.1" {
		t.Fatalf("created %v", nb)
	}
	got := e.object("nodebalancers", "view", id(nb))
	if got["label"] != "web-lb" || got["id"] != nb["id"] {
		t.Fatalf("view %v, want the created NodeBalancer", got)
	}

	// An update sends only the flags given: the throttle stays 5.
	up := e.object("nodebalancers", "update", id(nb), "--label", "renamed", "--tags", "")
	if up["label"] != "renamed" || jsonText(up["tags"]) != `[]` || up["client_conn_throttle"] != 5.0 {
		t.Fatalf("updated %v", up)
	}
	up = e.object("nodebalancers", "update", id(nb), "--client_conn_throttle", "0")
	if up["label"] != "renamed" || up["client_conn_throttle"] != 0.0 {
		t.Fatalf("throttle 0 must be sent when given: %v", up)
	}

	if out := e.ok("nodebalancers", "delete", id(nb)); out != "" {
		t.Fatalf("delete printed %q, want nothing", out)
	}
	r := e.run("nodebalancers", "view", id(nb))
	if r.code != 1 || r.stderr != "Not found\n" || r.stdout != "" {
		t.Fatalf("view after delete: %+v", r)
	}
	if l := e.objects("nodebalancers", "list"); len(l) != 0 {
		t.Fatalf("list after delete: %v", l)
	}
}

// columnStarts returns where each cell of an aligned line starts.
func columnStarts(line string) []int {
	var out []int
	for _, m := range regexp.MustCompile(`\S+`).FindAllStringIndex(line, -1) {
		out = append(out, m[0])
	}
	return out
}

func TestListTableHasTheColumnsAlignedUnderTheirHeaders(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.ok("nodebalancers", "create", "--label", "a-very-long-label-indeed", "--client_conn_throttle", "12")
	e.ok("nodebalancers", "create", "--label", "lb2")
	ls := lines(e.ok("nodebalancers", "list"))
	if len(ls) != 3 {
		t.Fatalf("list printed %q, want a header and two rows", ls)
	}
	if h := strings.Fields(ls[0]); !slices.Equal(h, nbColumns) {
		t.Fatalf("headers %q, want %q", h, nbColumns)
	}
	starts := columnStarts(ls[0])
	for _, l := range ls[1:] {
		if got := columnStarts(l); !slices.Equal(got, starts) {
			t.Fatalf("row %q starts its cells at %v, the header at %v", l, got, starts)
		}
		if strings.HasSuffix(l, " ") {
			t.Fatalf("row %q has trailing spaces", l)
		}
	}
	for i := 1; i < len(starts); i++ {
		widest := 0
		for _, l := range ls {
			widest = max(widest, len(strings.Fields(l)[i-1]))
		}
		if gap := starts[i] - starts[i-1] - widest; gap != 2 {
			t.Fatalf("column %d: gap of %d spaces after the widest cell, want 2", i, gap)
		}
	}
	if f := strings.Fields(ls[1]); f[1] != "a-very-long-label-indeed" || f[4] != "12" || f[3] != "127.0.1.1" {
		t.Fatalf("first row %q", f)
	}
}

func TestTextOutputIsDelimitedLikeLinodeCLI(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb := e.object("nodebalancers", "create", "--label", "text-lb", "--tags", "a,b", "--tags", "ccc")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"no headers", []string{"--text", "--no-headers"},
			[]string{id(nb) + "\ttext-lb\tlocal\t127.0.1.1\t0\t0"}},
		{"headers", []string{"--text"},
			[]string{strings.Join(nbColumns, "\t"), id(nb) + "\ttext-lb\tlocal\t127.0.1.1\t0\t0"}},
		{"delimiter implies text", []string{"--delimiter", ";", "--no-headers"},
			[]string{id(nb) + ";text-lb;local;127.0.1.1;0;0"}},
		{"format picks any field", []string{"--text", "--format", "label,tags,transfer.in,hostname,ipv6"},
			[]string{"label\ttags\ttransfer.in\thostname\tipv6", "text-lb\ta,b,ccc\t0\t127-0-1-1.ip.linodeusercontent.com\t"}},
		{"format in a table", []string{"--format", "id, label"},
			[]string{"id  label", id(nb) + "   text-lb"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := lines(e.ok(append([]string{"nodebalancers", "list"}, tc.args...)...))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestJSONOutputIsTheAPIObjects(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, l := range []string{"one", "two", "three"} {
		e.ok("nodebalancers", "create", "--label", l)
	}
	list := e.objects("nodebalancers", "list")
	if len(list) != 3 {
		t.Fatalf("list --json: %d objects, want 3", len(list))
	}
	for i, want := range []string{"one", "two", "three"} {
		nb := list[i]
		if nb["label"] != want {
			t.Fatalf("object %d label %v, want %s", i, nb["label"], want)
		}
		// Every field the API sends is there, nested objects included.
		for _, k := range []string{"id", "hostname", "ipv6", "transfer", "type", "created", "updated", "locks"} {
			if _, ok := nb[k]; !ok {
				t.Fatalf("object %d lacks %q: %v", i, k, nb)
			}
		}
		if tr, ok := nb["transfer"].(map[string]any); !ok || tr["total"] != 0.0 {
			t.Fatalf("transfer %v", nb["transfer"])
		}
	}
	// A view prints the object itself, not a list of one.
	if one := e.object("nodebalancers", "view", id(list[1])); one["label"] != "two" {
		t.Fatalf("view --json %v", one)
	}
}

func TestAliasAndDashedFlagSpellings(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb := e.object("nb", "create", "--label", "spell-lb")
	for _, tc := range []struct{ flag, value string }{
		{"--client_conn_throttle", "7"},
		{"--client-conn-throttle", "8"},
	} {
		got := e.object("nodebalancers", "update", id(nb), tc.flag, tc.value)
		if fmt.Sprint(got["client_conn_throttle"]) != tc.value {
			t.Fatalf("%s %s: throttle %v", tc.flag, tc.value, got["client_conn_throttle"])
		}
	}
	for _, f := range []string{"--no-headers", "--no_headers"} {
		if got := lines(e.ok("nodebalancers", "list", "--text", f)); len(got) != 1 {
			t.Fatalf("%s: %q, want one row without a header", f, got)
		}
	}
}

// fixedStats serves the same statistics for every NodeBalancer.
type fixedStats struct{ body any }

func (s fixedStats) NodeBalancerStats(int, url.Values) (any, error) { return s.body, nil }

func TestStatsSummarisesTheLatestSample(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	body := map[string]any{
		"title": "stats-lb (1): Connections & Traffic",
		"data": map[string]any{
			// Out of order on purpose: the summary takes the newest sample.
			"connections": [][2]float64{{float64(t0 + 600_000), 12}, {float64(t0), 3}, {float64(t0 + 300_000), 7}},
			"traffic": map[string]any{
				"in":  [][2]float64{{float64(t0), 100}, {float64(t0 + 600_000), 2048.5}},
				"out": [][2]float64{{float64(t0 + 600_000), 4096}},
			},
		},
	}
	e := newTestEnv(t, func(o *api.Options) { o.Stats = fixedStats{body} })
	nb := e.object("nodebalancers", "create", "--label", "stats-lb")
	got := lines(e.ok("nodebalancers", "stats", id(nb), "--text"))
	want := []string{"time\tconnections\ttraffic.in\ttraffic.out", "2026-05-01T12:10:00\t12\t2048.5\t4096"}
	if !slices.Equal(got, want) {
		t.Fatalf("stats --text %q, want %q", got, want)
	}
	js := e.object("nodebalancers", "stats", id(nb))
	if js["title"] != body["title"] {
		t.Fatalf("stats --json %v", js)
	}
	if r := e.run("nodebalancers", "stats", "999"); r.code != 1 || r.stderr != "Not found\n" {
		t.Fatalf("stats of an unknown NodeBalancer: %+v", r)
	}
}

func TestStatsWithoutAStatsSourcePrintsTheAPIError(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	nb := e.object("nodebalancers", "create", "--label", "nostats")
	r := e.run("nodebalancers", "stats", id(nb))
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "Not found\n") ||
		!strings.Contains(r.stderr, "does not serve its statistics") {
		t.Fatalf("stats: %+v", r)
	}
}

func TestLatestSample(t *testing.T) {
	tests := []struct {
		series [][]float64
		ms, v  float64
		ok     bool
	}{
		{nil, 0, 0, false},
		{[][]float64{{5, 1}}, 5, 1, true},
		{[][]float64{{5, 1}, {9, 2}, {7, 3}}, 9, 2, true},
		{[][]float64{{1}, {4, 8, 9}}, 0, 0, false}, // malformed samples are skipped
	}
	for _, tc := range tests {
		ms, v, ok := latest(tc.series)
		if ms != tc.ms || v != tc.v || ok != tc.ok {
			t.Errorf("latest(%v) = %v, %v, %v; want %v, %v, %v", tc.series, ms, v, ok, tc.ms, tc.v, tc.ok)
		}
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestCreateUsesTheServersRegion: the API requires a region; without --region the
// CLI asks the server for its one region (GET /v4/regions) and uses it, and a region
// the server does not serve gets the API's refusal naming the field.
func TestCreateUsesTheServersRegion(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *api.Options) { o.Policy.Region = "eu-lab" })
	nb := e.object("nodebalancers", "create", "--label", "regional")
	if nb["region"] != "eu-lab" {
		t.Fatalf("created %v, want region eu-lab", nb)
	}
	nb = e.object("nodebalancers", "create", "--label", "explicit", "--region", "eu-lab", "--client_udp_sess_throttle", "4")
	if nb["region"] != "eu-lab" || nb["client_udp_sess_throttle"] != 4.0 {
		t.Fatalf("created %v", nb)
	}
	cf := e.object("nodebalancers", "config-create", id(nb), "--port", "8080", "--udp_check_port", "1234")
	if cf["udp_check_port"] != 1234.0 {
		t.Fatalf("config %v, want udp_check_port 1234", cf)
	}
	r := e.run("nodebalancers", "create", "--label", "elsewhere", "--region", "us-east")
	if r.code != 1 || !strings.Contains(r.stderr, "region") {
		t.Fatalf("create in another region: %+v", r)
	}
}
