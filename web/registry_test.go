package web_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/balance"
	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/web"
)

// An algorithm and a check type registered by this test binary alone, tcp only:
// the console offers them for tcp (TestConsoleInChromium checks the dropdowns in
// the browser) and not for the other protocols, with no edit to the console.
var _ = balance.Register(balance.AlgorithmDef{
	AlgorithmInfo: model.AlgorithmInfo{Name: "test_console_first", Label: "First Node", Protocols: []model.Protocol{model.ProtocolTCP}},
	Build:         func(e balance.Eligible) balance.Picker { return firstPicker{e.Node(0)} },
})

type firstPicker struct{ n *balance.Node }

func (f firstPicker) Pick(q balance.Query) *balance.Node {
	if q.Usable(f.n) {
		return f.n
	}
	return q.Scan(0)
}

func init() {
	health.Register(health.CheckDef{
		CheckInfo: model.CheckInfo{Name: "test_console_banner", Label: "Banner", UsesBody: true, Protocols: []model.Protocol{model.ProtocolTCP}},
		Probe:     func(context.Context, health.Target) error { return nil },
	})
}

func TestChoicesModuleFollowsTheRegistry(t *testing.T) {
	rec := httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/js/choices.js", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") || rec.Header().Get("ETag") == "" {
		t.Fatalf("GET /js/choices.js: %d %v", rec.Code, rec.Header())
	}
	for _, want := range []string{
		`export default {`,
		`{"value":"ring_hash","label":"Ring Hash","protocols":["udp"]}`,
		`{"value":"test_console_first","label":"First Node","protocols":["tcp"]}`,
		`{"value":"http_body","label":"HTTP Body","uses_path":true,"uses_body":true}`,
		`{"value":"test_console_banner","label":"Banner","protocols":["tcp"],"uses_body":true}`,
		`{"value":"http_cookie","label":"HTTP Cookie","protocols":["http","https"]}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("choices.js lacks %s:\n%s", want, body)
		}
	}
}
