package api

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is the X-Filter language of Linode's list endpoints:
//
//	{"label": "web"}                              equality
//	{"port": {"+gte": 80, "+lt": 1024}}           operators, all must hold
//	{"+or": [{"label": "a"}, {"label": "b"}]}     any of
//	{"+and": [{…}, {…}]}                          all of (as are several keys)
//	{"+order_by": "label", "+order": "desc"}      ordering (top level only)
//
// Operators: +eq +neq +gt +gte +lt +lte +contains. Comparisons (+gt…) apply to
// integer fields, +contains to strings (case-insensitive). A tags field matches when
// any tag does (+neq: when none equals). Anything else is refused with a reason.

// fieldKind is the type of a filterable field.
type fieldKind uint8

const (
	kindString fieldKind = iota + 1
	kindInt
	kindTags
)

// filterFields names the filterable fields of one collection.
type filterFields map[string]fieldKind

// fieldValue is one field of one record, as a filter sees it.
type fieldValue struct {
	s    string
	n    int64
	tags []string
}

// getter returns the named field of a record.
type getter func(field string) fieldValue

// Limits that keep a hostile filter cheap to parse and evaluate.
const (
	maxFilterBytes = 8 << 10
	maxFilterDepth = 8
	maxFilterConds = 128
)

// filter is a parsed X-Filter.
type filter struct {
	root    cond
	orderBy string
	desc    bool
}

type cond interface{ eval(get getter) bool }

type allOf []cond
type anyOf []cond

func (cs allOf) eval(g getter) bool {
	for _, c := range cs {
		if !c.eval(g) {
			return false
		}
	}
	return true
}

func (cs anyOf) eval(g getter) bool {
	for _, c := range cs {
		if c.eval(g) {
			return true
		}
	}
	return false
}

// comparison is one operator applied to one field.
type comparison struct {
	field string
	kind  fieldKind
	op    string
	s     string
	n     int64
}

func (c comparison) eval(g getter) bool {
	v := g(c.field)
	switch c.kind {
	case kindInt:
		switch c.op {
		case "+eq":
			return v.n == c.n
		case "+neq":
			return v.n != c.n
		case "+gt":
			return v.n > c.n
		case "+gte":
			return v.n >= c.n
		case "+lt":
			return v.n < c.n
		case "+lte":
			return v.n <= c.n
		}
	case kindString:
		switch c.op {
		case "+eq":
			return v.s == c.s
		case "+neq":
			return v.s != c.s
		case "+contains":
			return containsFold(v.s, c.s)
		}
	case kindTags:
		switch c.op {
		case "+eq":
			return slices.Contains(v.tags, c.s)
		case "+neq":
			return !slices.Contains(v.tags, c.s)
		case "+contains":
			return slices.ContainsFunc(v.tags, func(t string) bool { return containsFold(t, c.s) })
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// filterError is why an X-Filter was refused.
type filterError struct{ reason string }

func (e *filterError) Error() string { return e.reason }

func filterErr(format string, args ...any) error {
	return &filterError{fmt.Sprintf(format, args...)}
}

// parseFilter parses an X-Filter header against the fields of a collection. An empty
// header matches everything in id order.
func parseFilter(header string, fields filterFields) (*filter, error) {
	f := &filter{}
	if strings.TrimSpace(header) == "" {
		return f, nil
	}
	if len(header) > maxFilterBytes {
		return nil, filterErr("X-Filter must be at most %d bytes", maxFilterBytes)
	}
	d := json.NewDecoder(strings.NewReader(header))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, filterErr("X-Filter is not valid JSON")
	}
	if strings.TrimSpace(header[d.InputOffset():]) != "" {
		return nil, filterErr("X-Filter must be a single JSON object")
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, filterErr("X-Filter must be a JSON object")
	}
	if ob, ok := top["+order_by"]; ok {
		name, ok := ob.(string)
		if !ok {
			return nil, filterErr("+order_by must be a field name")
		}
		k, known := fields[name]
		if !known || k == kindTags {
			return nil, filterErr("Cannot order by %s", quoteField(name))
		}
		f.orderBy = name
		delete(top, "+order_by")
	}
	if o, ok := top["+order"]; ok {
		switch o {
		case "asc":
		case "desc":
			f.desc = true
		default:
			return nil, filterErr("+order must be asc or desc")
		}
		delete(top, "+order")
	}
	p := parser{fields: fields}
	root, err := p.object(top, 0)
	if err != nil {
		return nil, err
	}
	f.root = root
	return f, nil
}

type parser struct {
	fields filterFields
	conds  int
}

// object parses one filter object: every key must hold.
func (p *parser) object(m map[string]any, depth int) (cond, error) {
	if depth > maxFilterDepth {
		return nil, filterErr("X-Filter is nested too deeply (at most %d levels)", maxFilterDepth)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic errors and evaluation order
	var all allOf
	for _, k := range keys {
		v := m[k]
		switch k {
		case "+or", "+and":
			list, ok := v.([]any)
			if !ok {
				return nil, filterErr("%s must be a list of filter objects", k)
			}
			var sub []cond
			for _, e := range list {
				em, ok := e.(map[string]any)
				if !ok {
					return nil, filterErr("%s must be a list of filter objects", k)
				}
				c, err := p.object(em, depth+1)
				if err != nil {
					return nil, err
				}
				sub = append(sub, c)
			}
			if k == "+or" {
				all = append(all, anyOf(sub))
			} else {
				all = append(all, allOf(sub))
			}
		case "+order_by", "+order":
			return nil, filterErr("%s is only allowed at the top level of X-Filter", k)
		default:
			if strings.HasPrefix(k, "+") {
				return nil, filterErr("Unknown filter operator %s", quoteField(k))
			}
			c, err := p.field(k, v)
			if err != nil {
				return nil, err
			}
			all = append(all, c)
		}
	}
	return all, nil
}

// field parses the condition on one field: a plain value (equality) or an object of
// operators.
func (p *parser) field(name string, v any) (cond, error) {
	kind, ok := p.fields[name]
	if !ok {
		return nil, filterErr("Cannot filter on %s", quoteField(name))
	}
	ops, isOps := v.(map[string]any)
	if !isOps {
		return p.comparison(name, kind, "+eq", v)
	}
	if len(ops) == 0 {
		return nil, filterErr("Filter on %s has no operator", name)
	}
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var all allOf
	for _, op := range keys {
		c, err := p.comparison(name, kind, op, ops[op])
		if err != nil {
			return nil, err
		}
		all = append(all, c)
	}
	return all, nil
}

func (p *parser) comparison(name string, kind fieldKind, op string, v any) (cond, error) {
	p.conds++
	if p.conds > maxFilterConds {
		return nil, filterErr("X-Filter has too many conditions (at most %d)", maxFilterConds)
	}
	switch op {
	case "+eq", "+neq", "+gt", "+gte", "+lt", "+lte", "+contains":
	default:
		return nil, filterErr("Unknown filter operator %s", quoteField(op))
	}
	c := comparison{field: name, kind: kind, op: op}
	switch kind {
	case kindInt:
		num, ok := v.(json.Number)
		if !ok {
			return nil, filterErr("%s must be compared with an integer", name)
		}
		n, err := strconv.ParseInt(num.String(), 10, 64)
		if err != nil {
			return nil, filterErr("%s must be compared with an integer", name)
		}
		if op == "+contains" {
			return nil, filterErr("+contains does not apply to %s, an integer field", name)
		}
		c.n = n
	default:
		s, ok := v.(string)
		if !ok {
			return nil, filterErr("%s must be compared with a string", name)
		}
		switch op {
		case "+gt", "+gte", "+lt", "+lte":
			return nil, filterErr("%s does not apply to %s, a text field", op, name)
		}
		c.s = s
	}
	return c, nil
}

// quoteField shows a client-supplied name in a reason, bounded and printable.
func quoteField(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

// match reports whether the record passes the filter.
func (f *filter) match(g getter) bool {
	return f.root == nil || f.root.eval(g)
}

// compare orders two records by +order_by (0 when no order is asked for, so a stable
// sort keeps id order, which also breaks ties).
func (f *filter) compare(a, b getter, fields filterFields) int {
	if f.orderBy == "" {
		return 0
	}
	va, vb := a(f.orderBy), b(f.orderBy)
	var c int
	if fields[f.orderBy] == kindInt {
		c = cmp.Compare(va.n, vb.n)
	} else {
		c = strings.Compare(va.s, vb.s)
	}
	if f.desc {
		c = -c
	}
	return c
}

// apply filters and orders items, keeping the input order among equals.
func applyFilter[T any](f *filter, fields filterFields, items []T, get func(T) getter) []T {
	out := make([]T, 0, len(items))
	for _, it := range items {
		if f.match(get(it)) {
			out = append(out, it)
		}
	}
	if f.orderBy != "" {
		slices.SortStableFunc(out, func(a, b T) int { return f.compare(get(a), get(b), fields) })
	}
	return out
}
