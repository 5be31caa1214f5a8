package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// object reads the fields of one JSON object by name, recording a field error (with
// the full dotted path, e.g. "configs[0].nodes[1].weight") for every value of the
// wrong type and, at the end, the path of every field nobody asked for. Decoding field
// by field rather than into a struct lets one request report all its mistakes at once,
// tell "absent" from "null" from a value, and name nested fields the way Linode does.
//
// Fields nobody asked for are ignored, as the live API ignores them: Linode's clients
// send keys of features this server lacks (linode_api4's test fixtures send
// "firewall"), and refusing them would break those clients. They are only listed in
// ignored, for the request's debug log line.
type object struct {
	path    string
	m       map[string]json.RawMessage
	used    map[string]bool
	es      *model.Errors
	ignored *[]string // nil: not collected
}

// newObject parses raw as a JSON object; on failure it records why against path and
// returns nil.
func newObject(raw json.RawMessage, path string, es *model.Errors, ignored *[]string) *object {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		reason := "must be a JSON object"
		if path == "" {
			es.Add("", "The request body must be a JSON object")
		} else {
			es.Add(path, path+" "+reason)
		}
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		es.Add(path, "Malformed JSON: "+jsonReason(err))
		return nil
	}
	return &object{path: path, m: m, used: map[string]bool{}, es: es, ignored: ignored}
}

// parseBody parses a request body as a JSON object. An empty body counts as {}.
// The paths of fields no reader asks for are appended to ignored (when not nil).
func parseBody(body []byte, es *model.Errors, ignored *[]string) *object {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		// json.Unmarshal names the offset of the first syntax error; report that.
		var v any
		err := json.Unmarshal(body, &v)
		es.Add("", "Malformed JSON: "+jsonReason(err))
		return nil
	}
	return newObject(body, "", es, ignored)
}

func jsonReason(err error) string {
	if err == nil {
		return "invalid JSON"
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
	}
	return err.Error()
}

// field returns the dotted path of key inside o.
func (o *object) field(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// take marks key used and returns its raw value; ok is false when the key is absent
// or null (null means "not given" for every field that does not say otherwise).
func (o *object) take(key string) (json.RawMessage, bool) {
	v, present := o.m[key]
	if !present {
		return nil, false
	}
	o.used[key] = true
	if isNull(v) {
		return nil, false
	}
	return v, true
}

// has reports whether key is present, null or not.
func (o *object) has(key string) bool {
	_, ok := o.m[key]
	return ok
}

// isNullField reports whether key is present with the value null.
func (o *object) isNullField(key string) bool {
	v, ok := o.m[key]
	return ok && isNull(v)
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// str reads a string field into dst and reports whether it was given.
func (o *object) str(key string, dst *string) bool {
	v, ok := o.take(key)
	if !ok {
		return false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		o.es.Add(o.field(key), o.field(key)+" must be a string")
		return false
	}
	*dst = s
	return true
}

// integer reads an integer field into dst and reports whether it was given.
func (o *object) integer(key string, dst *int) bool {
	v, ok := o.take(key)
	if !ok {
		return false
	}
	n, ok := parseInt(v)
	if !ok {
		o.es.Add(o.field(key), o.field(key)+" must be an integer")
		return false
	}
	*dst = n
	return true
}

// parseInt parses a JSON number that is an integer fitting in 32 bits (every integer
// field of the API is far smaller; refusing the rest avoids overflow surprises).
func parseInt(v json.RawMessage) (int, bool) {
	s := string(bytes.TrimSpace(v))
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// boolean reads a boolean field into dst and reports whether it was given.
func (o *object) boolean(key string, dst *bool) bool {
	v, ok := o.take(key)
	if !ok {
		return false
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		o.es.Add(o.field(key), o.field(key)+" must be true or false")
		return false
	}
	*dst = b
	return true
}

// strings reads a list of strings; a null list reads as empty. It reports whether
// the key was present at all.
func (o *object) strings(key string, dst *[]string) bool {
	if !o.has(key) {
		return false
	}
	v, ok := o.take(key)
	if !ok {
		*dst = []string{}
		return true
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		o.es.Add(o.field(key), o.field(key)+" must be a list of strings")
		return false
	}
	out := make([]string, 0, len(raw))
	bad := false
	for i, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			f := o.field(key) + "[" + strconv.Itoa(i) + "]"
			o.es.Add(f, f+" must be a string")
			bad = true
			continue
		}
		out = append(out, s)
	}
	if bad {
		return false
	}
	*dst = out
	return true
}

// objects reads a list of objects, returning one *object per element (nil for
// elements that are not objects, whose error is recorded). present is false when
// the key is absent or null.
func (o *object) objects(key string) (list []*object, present bool) {
	v, ok := o.take(key)
	if !ok {
		return nil, false
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		o.es.Add(o.field(key), o.field(key)+" must be a list of objects")
		return nil, true
	}
	list = make([]*object, len(raw))
	for i, r := range raw {
		list[i] = newObject(r, o.field(key)+"["+strconv.Itoa(i)+"]", o.es, o.ignored)
	}
	return list, true
}

// ignore consumes read-only fields a client may echo back from a response.
func (o *object) ignore(keys ...string) {
	for _, k := range keys {
		if _, ok := o.m[k]; ok {
			o.used[k] = true
		}
	}
}

// unsupported consumes fields of newer Linode features this server does not
// implement: a zero, empty or null value (what clients send by default) is accepted,
// anything else is refused by name rather than silently ignored.
func (o *object) unsupported(keys ...string) {
	for _, k := range keys {
		v, ok := o.take(k)
		if ok && !isZeroJSON(v) {
			o.es.Add(o.field(k), o.field(k)+" is not supported by this server")
		}
	}
}

// isZeroJSON reports whether v is null, 0, false, "", [] or {}.
func isZeroJSON(v json.RawMessage) bool {
	switch s := string(bytes.TrimSpace(v)); s {
	case "null", "false", `""`:
		return true
	default:
		var x any
		if json.Unmarshal(v, &x) != nil {
			return false
		}
		switch t := x.(type) {
		case float64:
			return t == 0
		case []any:
			return len(t) == 0
		case map[string]any:
			return len(t) == 0
		}
		return false
	}
}

// finish lists, in ignored, the path of every field that was not read.
func (o *object) finish() {
	if o == nil || o.ignored == nil {
		return
	}
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, o.field(k))
		}
	}
	slices.Sort(unknown)
	*o.ignored = append(*o.ignored, unknown...)
}
