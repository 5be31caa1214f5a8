package health

import (
	"regexp"
	"strings"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// Spec is the part of a configuration that decides how its nodes are
// checked. It is comparable, so Set can tell whether anything changed.
type Spec struct {
	Check    model.Check   // none, connection, http, http_body or a registered type
	Interval time.Duration // time between the starts of two checks of a node
	Timeout  time.Duration // how long one check may take
	Attempts int           // failed checks in a row that take a node DOWN
	Path     string        // request path of http and http_body checks ("/" when empty)
	Body     string        // regular expression the body must match (http_body)
	Passive  bool          // whether reports of real traffic count
}

// SpecOf returns the Spec of a configuration, turning its whole seconds into
// durations. Tests and callers that need sub-second timing build a Spec
// directly.
func SpecOf(c *model.Config) Spec {
	return Spec{
		Check:    c.Check,
		Interval: time.Duration(c.CheckInterval) * time.Second,
		Timeout:  time.Duration(c.CheckTimeout) * time.Second,
		Attempts: c.CheckAttempts,
		Path:     c.CheckPath,
		Body:     c.CheckBody,
		Passive:  c.CheckPassive,
	}
}

// Floors that keep a malformed Spec from spinning; the API never sends one.
const (
	minInterval = 10 * time.Millisecond
	minTimeout  = time.Millisecond
)

// normalize fills defaults and clamps values the API would have refused, so
// that the scheduler never divides by zero or spins.
func (s Spec) normalize() Spec {
	if !Implements(s.Check) {
		s.Check = model.CheckNone
	}
	if s.Attempts < 1 {
		s.Attempts = 1
	}
	if s.Interval < minInterval {
		s.Interval = minInterval
	}
	if s.Timeout < minTimeout {
		s.Timeout = minTimeout
	}
	if s.Path == "" {
		s.Path = "/"
	} else if !strings.HasPrefix(s.Path, "/") {
		s.Path = "/" + s.Path
	}
	return s
}

// active reports whether the spec runs active checks.
func (s *Spec) active() bool { return s.Check != model.CheckNone }

// checkSpec is a normalized Spec with its compiled body expression. It is
// immutable once built; runners hold a pointer to the one they started with.
type checkSpec struct {
	Spec
	body    *regexp.Regexp // compiled Body, for http_body and registered types that use it
	bodyErr error          // why Body does not compile (the API refuses that)
	custom  Probe          // a registered type's probe; nil for Linode's four
}

// newCheckSpec normalizes s and compiles its body expression, reusing prev's
// compiled expression when the text has not changed.
func newCheckSpec(s Spec, prev *checkSpec) *checkSpec {
	cs := &checkSpec{Spec: s.normalize()}
	cs.custom = probeOf(cs.Check)
	if info, _ := model.LookupCheck(cs.Check); !info.UsesBody {
		return cs
	}
	if prev != nil && prev.Check == cs.Check && prev.Body == cs.Body {
		cs.body, cs.bodyErr = prev.body, prev.bodyErr
		return cs
	}
	cs.body, cs.bodyErr = regexp.Compile(cs.Body)
	return cs
}
