package store

import (
	"encoding/json"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

func TestFastNodeDecodesWhatMarshalWrites(t *testing.T) {
	for _, n := range []model.Node{
		{ID: 1, ConfigID: 2, NodeBalancerID: 3, Label: "web-1", Address: "127.0.0.2:80", Weight: 50, Mode: model.ModeAccept},
		{ID: 1 << 40, Label: "a.b_c", Address: "[fd00::1]:8080", Weight: 255, Mode: model.ModeBackup},
		{},
	} {
		b, _ := json.Marshal(n)
		var got model.Node
		if !fastNode(b, &got) || got != n {
			t.Errorf("%s: fast path %v, %+v", b, fastNode(b, &got), got)
		}
	}
	for _, s := range []string{
		`{"id":1,"label":"a\"b"}`, `{"id":1.5}`, `{"id":1,"extra":2}`, `{"id":01}`, `{"label":"é"}`, ` {"id":1}`, `{"id":1}x`,
	} {
		var n model.Node
		if fastNode([]byte(s), &n) {
			t.Errorf("%s: fast path taken, want encoding/json", s)
		}
	}
}

func FuzzDecodeNodeMatchesEncodingJSON(f *testing.F) {
	b, _ := json.Marshal(model.Node{ID: 7, ConfigID: 2, NodeBalancerID: 1, Label: "x-1", Address: "127.0.0.1:1", Weight: 9, Mode: model.ModeDrain})
	f.Add(b)
	f.Add([]byte(`{"id":1,"label":"a\u0041"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow model.Node
		if !fastNode(b, &fast) {
			return
		}
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("%q: fast path accepted what encoding/json refuses: %v", b, err)
		}
		if fast != slow {
			t.Fatalf("%q: fast %+v, encoding/json %+v", b, fast, slow)
		}
	})
}
