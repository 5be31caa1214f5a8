package api

import (
	"slices"
	"strings"
	"testing"
)

// rec is a record for filter tests.
type rec struct {
	id     int
	label  string
	weight int
	tags   []string
}

var recFields = filterFields{"id": kindInt, "label": kindString, "weight": kindInt, "tags": kindTags}

func recGetter(r rec) getter {
	return func(f string) fieldValue {
		switch f {
		case "id":
			return fieldValue{n: int64(r.id)}
		case "label":
			return fieldValue{s: r.label}
		case "weight":
			return fieldValue{n: int64(r.weight)}
		case "tags":
			return fieldValue{tags: r.tags}
		}
		return fieldValue{}
	}
}

var recs = []rec{
	{1, "web-a", 50, []string{"prod", "web"}},
	{2, "web-b", 10, []string{"staging"}},
	{3, "db-a", 50, nil},
	{4, "Web-C", 200, []string{"prod"}},
}

func ids(rs []rec) []int {
	out := []int{}
	for _, r := range rs {
		out = append(out, r.id)
	}
	return out
}

func TestFilterSelectsAndOrders(t *testing.T) {
	tests := []struct {
		filter string
		want   []int
	}{
		{``, []int{1, 2, 3, 4}},
		{`{}`, []int{1, 2, 3, 4}},
		{`{"label":"web-a"}`, []int{1}},
		{`{"label":{"+eq":"web-a"}}`, []int{1}},
		{`{"label":{"+neq":"web-a"}}`, []int{2, 3, 4}},
		{`{"label":{"+contains":"WEB"}}`, []int{1, 2, 4}},
		{`{"weight":50}`, []int{1, 3}},
		{`{"weight":{"+gt":10}}`, []int{1, 3, 4}},
		{`{"weight":{"+gte":10,"+lt":200}}`, []int{1, 2, 3}},
		{`{"weight":{"+lte":10}}`, []int{2}},
		{`{"tags":"prod"}`, []int{1, 4}},
		{`{"tags":{"+neq":"prod"}}`, []int{2, 3}},
		{`{"tags":{"+contains":"stag"}}`, []int{2}},
		{`{"label":{"+contains":"web"},"weight":50}`, []int{1}},
		{`{"+or":[{"label":"db-a"},{"weight":200}]}`, []int{3, 4}},
		{`{"+and":[{"tags":"prod"},{"weight":{"+gt":60}}]}`, []int{4}},
		{`{"+or":[{"+and":[{"tags":"prod"},{"weight":50}]},{"id":2}]}`, []int{1, 2}},
		{`{"+or":[]}`, []int{}},
		{`{"+order_by":"weight","+order":"desc"}`, []int{4, 1, 3, 2}},
		{`{"+order_by":"weight"}`, []int{2, 1, 3, 4}},
		{`{"+order_by":"label","+order":"asc"}`, []int{4, 3, 1, 2}},
		{`{"+order_by":"label","+order":"desc","tags":"prod"}`, []int{1, 4}},
	}
	for _, tt := range tests {
		f, err := parseFilter(tt.filter, recFields)
		if err != nil {
			t.Errorf("%s: %v", tt.filter, err)
			continue
		}
		if got := ids(applyFilter(f, recFields, recs, recGetter)); !slices.Equal(got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func TestFilterRefusals(t *testing.T) {
	tests := []struct{ filter, reason string }{
		{`{`, "not valid JSON"},
		{`[]`, "JSON object"},
		{`"label"`, "JSON object"},
		{`{} {}`, "single JSON object"},
		{`{"nope":1}`, `Cannot filter on "nope"`},
		{`{"label":5}`, "string"},
		{`{"weight":"5"}`, "integer"},
		{`{"weight":5.5}`, "integer"},
		{`{"label":null}`, "string"},
		{`{"label":{"+gt":"a"}}`, "text field"},
		{`{"weight":{"+contains":5}}`, "integer field"},
		{`{"label":{"+like":"a"}}`, "Unknown filter operator"},
		{`{"label":{}}`, "no operator"},
		{`{"+nor":[]}`, "Unknown filter operator"},
		{`{"+or":{"label":"a"}}`, "list of filter objects"},
		{`{"+or":["a"]}`, "list of filter objects"},
		{`{"+order_by":"tags"}`, "Cannot order by"},
		{`{"+order_by":"nope"}`, "Cannot order by"},
		{`{"+order_by":1}`, "field name"},
		{`{"+order":"sideways"}`, "asc or desc"},
		{`{"+or":[{"+order_by":"label"}]}`, "top level"},
		{strings.Repeat(`{"+or":[`, 10) + `{}` + strings.Repeat(`]}`, 10), "nested too deeply"},
		{`{"label":"` + strings.Repeat("x", maxFilterBytes) + `"}`, "at most"},
	}
	for _, tt := range tests {
		_, err := parseFilter(tt.filter, recFields)
		if err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("%.60s: %v, want a reason containing %q", tt.filter, err, tt.reason)
		}
	}
	var many []string
	for range maxFilterConds + 1 {
		many = append(many, `{"id":1}`)
	}
	if _, err := parseFilter(`{"+or":[`+strings.Join(many, ",")+`]}`, recFields); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Errorf("too many conditions: %v", err)
	}
}

// FuzzFilter checks that no header makes the parser panic, and that an accepted
// filter evaluates deterministically (twice the same, whatever the input order
// among equals).
func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		`{"label":"web-a"}`, `{"weight":{"+gte":10,"+lt":200}}`, `{"+or":[{"label":"db-a"},{"weight":200}]}`,
		`{"+order_by":"label","+order":"desc","tags":{"+contains":"pro"}}`, `{"+and":[{"+or":[{"id":1}]}]}`, `{`, `[]`, `null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		flt, err := parseFilter(header, recFields)
		if err != nil {
			if _, ok := err.(*filterError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		a := ids(applyFilter(flt, recFields, recs, recGetter))
		b := ids(applyFilter(flt, recFields, recs, recGetter))
		if !slices.Equal(a, b) {
			t.Fatalf("%q evaluated to %v then %v", header, a, b)
		}
		if flt.orderBy == "" && !slices.IsSorted(a) {
			t.Fatalf("%q without +order_by broke id order: %v", header, a)
		}
	})
}
