package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

func decodeOne(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%q is not a JSON object: %v", s, err)
	}
	return m
}

func TestColourOnlyOnATerminalWithoutNOCOLOR(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0) // a character device, as a terminal is
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	regular, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		name string
		w    any
		env  func(string) string
		want bool
	}{
		{"character device", devNull, env(), true},
		{"NO_COLOR set", devNull, env("NO_COLOR", "1"), false},
		{"NO_COLOR empty counts as unset", devNull, env("NO_COLOR", ""), true},
		{"dumb terminal", devNull, env("TERM", "dumb"), false},
		{"regular file", regular, env(), false},
		{"buffer", &bytes.Buffer{}, env(), false},
	}
	for _, tc := range tests {
		w := tc.w.(interface{ Write([]byte) (int, error) })
		if got := useColor(w, tc.env); got != tc.want {
			t.Errorf("%s: useColor = %v, want %v", tc.name, got, tc.want)
		}
	}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestColouredStatusKeepsColumnsAligned(t *testing.T) {
	var b bytes.Buffer
	p := &printer{w: &b, mode: modeTable, headers: true, color: true}
	raws := []json.RawMessage{
		json.RawMessage(`{"id":1,"label":"web1","status":"UP","mode":"accept"}`),
		json.RawMessage(`{"id":22,"label":"web22","status":"DOWN","mode":"accept"}`),
		json.RawMessage(`{"id":3,"label":"w3","status":"Unknown","mode":"drain"}`),
	}
	if err := p.objects([]string{"id", "status", "mode"}, raws, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, ansiGreen+"UP"+ansiReset) || !strings.Contains(out, ansiRed+"DOWN"+ansiReset) ||
		!strings.Contains(out, ansiYellow+"Unknown"+ansiReset) {
		t.Fatalf("no colours in %q", out)
	}
	if strings.Count(out, "\x1b[") != 6 {
		t.Fatalf("only UP, DOWN and Unknown are coloured: %q", out)
	}
	plain := lines(ansi.ReplaceAllString(out, ""))
	want := []string{"id  status   mode", "1   UP       accept", "22  DOWN     accept", "3   Unknown  drain"}
	if strings.Join(plain, "\n") != strings.Join(want, "\n") {
		t.Fatalf("without escapes:\n%s\nwant:\n%s", strings.Join(plain, "\n"), strings.Join(want, "\n"))
	}
}

func TestCellsCannotInjectControlCharacters(t *testing.T) {
	for _, mode := range []outputMode{modeTable, modeText} {
		var b bytes.Buffer
		p := &printer{w: &b, mode: mode, headers: false, delim: "\t"}
		raw := json.RawMessage(`{"check_body":"a\tb\nc\u001b[2Jd\u009b"}`)
		if err := p.objects([]string{"check_body"}, []json.RawMessage{raw}, true); err != nil {
			t.Fatal(err)
		}
		if got, want := b.String(), `a\tb\nc\x1b[2Jd\u009b`+"\n"; got != want {
			t.Errorf("mode %d: %q, want %q", mode, got, want)
		}
	}
}

func TestCellText(t *testing.T) {
	obj, err := decodeObject(json.RawMessage(`{"n":12345678901234567890,"f":0.5,"b":false,"s":"x","null":null,
		"tags":["a","b"],"empty":[],"o":{"up":1,"in":{"deep":"yes"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"n": "12345678901234567890", "f": "0.5", "b": "false", "s": "x", "null": "", "missing": "",
		"tags": "a,b", "empty": "", "o": `{"in":{"deep":"yes"},"up":1}`, "o.up": "1", "o.in.deep": "yes", "s.x": "",
	}
	for path, want := range tests {
		if got := cellText(lookup(obj, path)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}
