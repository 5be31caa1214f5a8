package health

import (
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

func TestSpecOfConfig(t *testing.T) {
	c := model.NewConfig()
	c.Check, c.CheckInterval, c.CheckTimeout, c.CheckAttempts = model.CheckHTTPBody, 10, 4, 5
	c.CheckPath, c.CheckBody, c.CheckPassive = "/up", "ok", false
	want := Spec{Check: model.CheckHTTPBody, Interval: 10 * time.Second, Timeout: 4 * time.Second, Attempts: 5, Path: "/up", Body: "ok"}
	if got := SpecOf(&c); got != want {
		t.Fatalf("SpecOf = %+v, want %+v", got, want)
	}
	d := model.NewConfig()
	if got := SpecOf(&d); got.Check != model.CheckNone || !got.Passive || got.Interval != 31*time.Second {
		t.Fatalf("SpecOf(defaults) = %+v", got)
	}
}

func TestSpecNormalize(t *testing.T) {
	got := Spec{Check: "", Path: "health"}.normalize()
	if got.Check != model.CheckNone || got.Path != "/health" || got.Attempts != 1 || got.Interval < minInterval || got.Timeout < minTimeout {
		t.Fatalf("normalize = %+v", got)
	}
	if got := (Spec{Check: model.CheckHTTP}).normalize(); got.Path != "/" {
		t.Fatalf("empty path normalized to %q, want /", got.Path)
	}
}

func TestBodyExpressionCompiledOncePerChange(t *testing.T) {
	s := Spec{Check: model.CheckHTTPBody, Body: "ok"}
	a := newCheckSpec(s, nil)
	if a.body == nil || a.bodyErr != nil {
		t.Fatalf("compile: %v", a.bodyErr)
	}
	s.Attempts = 7 // another field changed: same expression
	if b := newCheckSpec(s, a); b.body != a.body {
		t.Fatal("unchanged check_body compiled again")
	}
	s.Body = "ok|fine"
	if c := newCheckSpec(s, a); c.body == a.body || !c.body.MatchString("fine") {
		t.Fatal("changed check_body not recompiled")
	}
	if d := newCheckSpec(Spec{Check: model.CheckHTTPBody, Body: "("}, nil); d.bodyErr == nil {
		t.Fatal("invalid check_body compiled")
	}
}
