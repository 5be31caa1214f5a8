package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// outputMode is how results are printed.
type outputMode uint8

const (
	modeTable outputMode = iota // aligned columns for people
	modeText                    // delimiter-separated, like linode-cli --text
	modeJSON                    // the API objects as JSON
)

// printer prints API objects in the chosen mode. Columns are dotted paths into the
// objects ("transfer.total"), so --format can name any field the API returns.
type printer struct {
	w       io.Writer
	mode    outputMode
	headers bool
	delim   string
	color   bool     // colour node status (table mode on a terminal only)
	columns []string // --format; nil: the command's defaults
}

// objects prints API objects: as a JSON array when list, else the single object as
// JSON; or as rows of the given columns (or --format's).
func (p *printer) objects(columns []string, raws []json.RawMessage, list bool) error {
	if p.mode == modeJSON {
		var v any = raws
		if !list && len(raws) == 1 {
			v = raws[0]
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = p.w.Write(append(b, '\n'))
		return err
	}
	if p.columns != nil {
		columns = p.columns
	}
	rows := make([][]string, 0, len(raws))
	for _, raw := range raws {
		obj, err := decodeObject(raw)
		if err != nil {
			return err
		}
		row := make([]string, len(columns))
		for i, c := range columns {
			row[i] = cellText(lookup(obj, c))
		}
		rows = append(rows, row)
	}
	return p.table(columns, rows)
}

// decodeObject decodes an API object keeping numbers exactly as sent.
func decodeObject(raw json.RawMessage) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var obj map[string]any
	if err := d.Decode(&obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// lookup follows a dotted path ("nodes_status.up") into obj; nil when absent.
func lookup(obj map[string]any, path string) any {
	var v any = obj
	for key := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[key]
	}
	return v
}

// cellText renders one JSON value for a cell: lists of scalars comma separated,
// null empty, objects as compact JSON.
func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cellText(e)
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// table prints rows under headers: aligned (table mode) or delimiter-separated.
func (p *printer) table(headers []string, rows [][]string) error {
	var b strings.Builder
	if p.mode == modeText {
		if p.headers {
			writeDelimited(&b, headers, p.delim)
		}
		for _, r := range rows {
			writeDelimited(&b, r, p.delim)
		}
		_, err := io.WriteString(p.w, b.String())
		return err
	}
	all := rows
	if p.headers {
		all = append([][]string{headers}, rows...)
	}
	widths := make([]int, len(headers))
	for _, r := range all {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(safe(c)))
		}
	}
	for ri, r := range all {
		for i, c := range r {
			c = safe(c)
			if p.color && (headers[i] == "status" || headers[i] == "listener.state") && (ri > 0 || !p.headers) {
				b.WriteString(colorStatus(c))
			} else {
				b.WriteString(c)
			}
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

// writeDelimited writes one --text row.
func writeDelimited(b *strings.Builder, cells []string, delim string) {
	for i, c := range cells {
		if i > 0 {
			b.WriteString(delim)
		}
		b.WriteString(safe(c))
	}
	b.WriteByte('\n')
}

// safe escapes control characters so a value can neither break a row nor send
// escape sequences to the terminal.
func safe(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isControl reports C0 and C1 control characters (C1 includes CSI, U+009B).
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

// ANSI colours for node status.
const (
	ansiGreen  = "\x1b[32m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiReset  = "\x1b[0m"
)

// colorStatus colours a node status or a config's listener state: UP and open
// green, DOWN and failed red, Unknown yellow (it takes traffic, but nothing vouches
// for it), anything else plain.
func colorStatus(s string) string {
	switch s {
	case "UP", "open":
		return ansiGreen + s + ansiReset
	case "DOWN", "failed":
		return ansiRed + s + ansiReset
	case string(model.StatusUnknown):
		return ansiYellow + s + ansiReset
	}
	return s
}

// useColor reports whether w is a terminal that may get colour: a character device
// (golang.org/x/term is not a dependency here), NO_COLOR unset or empty
// (https://no-color.org) and TERM not "dumb".
func useColor(w io.Writer, getenv func(string) string) bool {
	if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
