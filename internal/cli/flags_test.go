package cli

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseNodeSpec(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]any
		err  string // part of the message; "" when it parses
	}{
		{"label=web1,address=127.0.0.2:80,weight=50,mode=accept",
			map[string]any{"label": "web1", "address": "127.0.0.2:80", "weight": 50, "mode": "accept"}, ""},
		{"id=12", map[string]any{"id": 12}, ""},
		{" id = 12 , weight= 7 ,", map[string]any{"id": 12, "weight": 7}, ""},
		{"address=[::1]:8080", map[string]any{"address": "[::1]:8080"}, ""},
		{"label=", map[string]any{"label": ""}, ""}, // the API says what is wrong with it
		{"", nil, "at least one of"},
		{"web1", nil, `"web1" is not key=value`},
		{"weight=heavy", nil, `weight must be a number (got "heavy")`},
		{"id=0", nil, "id must be a positive number"},
		{"id=-3", nil, "id must be a positive number"},
		{"label=a,label=b", nil, "label is given twice"},
		{"port=80", nil, `unknown key "port"`},
	}
	for _, tc := range tests {
		got, err := parseNodeSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--node") {
				t.Errorf("parseNodeSpec(%q) error %v, want one starting --node and naming %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseNodeSpec(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseNodeSpec checks that any --node value either parses into known keys with
// values of the right type, or is refused with a message naming --node.
func FuzzParseNodeSpec(f *testing.F) {
	for _, s := range []string{"label=web1,address=127.0.0.2:80,weight=50,mode=accept,id=3", "id=1", "=", ",,,", "weight=9999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseNodeSpec(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--node") {
				t.Fatalf("error %q does not name --node", err)
			}
			return
		}
		if len(n) == 0 {
			t.Fatal("parsed to nothing without an error")
		}
		for k, v := range n {
			switch k {
			case "id", "weight":
				if _, ok := v.(int); !ok {
					t.Fatalf("%s = %#v, want an int", k, v)
				}
			case "label", "address", "mode":
				if s, ok := v.(string); !ok || strings.Contains(s, ",") {
					t.Fatalf("%s = %#v", k, v)
				}
			default:
				t.Fatalf("unknown key %q accepted", k)
			}
		}
	})
}

func TestNormalizeFlag(t *testing.T) {
	tests := map[string]string{
		"client-conn-throttle": "client_conn_throttle",
		"client_conn_throttle": "client_conn_throttle",
		"no_headers":           "no-headers",
		"no-headers":           "no-headers",
		"url":                  "url",
	}
	for in, want := range tests {
		if got := string(normalizeFlag(nil, in)); got != want {
			t.Errorf("normalizeFlag(%q) = %q, want %q", in, got, want)
		}
	}
}
