package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

var testPolicy = model.Policy{Region: "local", BackendRanges: model.DefaultBackendRanges()}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one API over a fresh bolt store, with a "*" token.
type env struct {
	t     testing.TB
	dir   string
	db    *store.DB
	api   *API
	token string
	clock *clock
}

// apiPool is the frontend pool of the stores these tests open.
const apiPool = "127.0.1.0/24"

func newEnv(t testing.TB, mod ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: &clock{t: time.Now().UTC()}}
	e.db = teststore.Open(t, e.dir, apiPool)
	tok, err := Bootstrap(e.db, "")
	if err != nil || tok == "" {
		t.Fatalf("Bootstrap = %q, %v", tok, err)
	}
	e.token = tok
	o := Options{DB: e.db, Policy: testPolicy, Now: e.clock.Now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mod {
		m(&o)
	}
	e.api = New(o)
	return e
}

// resp is a recorded API answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %q", r.status, r.body)
	}
	return m
}

// errs returns the error envelope's entries as field→reason (field "" when absent).
func (r resp) errs(t testing.TB) map[string]string {
	t.Helper()
	var env struct {
		Errors []struct {
			Field  *string `json:"field"`
			Reason string  `json:"reason"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || len(env.Errors) == 0 {
		t.Fatalf("response %d is not an error envelope: %q", r.status, r.body)
	}
	out := map[string]string{}
	for _, e := range env.Errors {
		f := ""
		if e.Field != nil {
			if *e.Field == "" {
				t.Fatalf("field must be omitted rather than empty: %q", r.body)
			}
			f = *e.Field
		}
		out[f] = e.Reason
	}
	return out
}

// do sends one request with the env's token (token "" = none, "-" = env token).
func (e *env) do(method, path, body string, hdr ...string) resp {
	e.t.Helper()
	return e.doAs(e.token, method, path, body, hdr...)
}

func (e *env) doAs(token, method, path, body string, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, req)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return resp{w.Code, w.Header(), w.Body.Bytes()}
}

// must sends a request that must answer 200 and returns its JSON object.
func (e *env) must(method, path, body string) map[string]any {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.status != http.StatusOK {
		e.t.Fatalf("%s %s = %d %s", method, path, r.status, r.body)
	}
	return r.json(e.t)
}

// snapshot is the whole stored state as JSON, to prove an error changed nothing.
func (e *env) snapshot() string {
	e.t.Helper()
	st, err := e.db.State()
	if err != nil {
		e.t.Fatal(err)
	}
	st.Revision = 0
	toks, err := e.db.Tokens()
	if err != nil {
		e.t.Fatal(err)
	}
	fws, err := e.db.ListFirewalls()
	if err != nil {
		e.t.Fatal(err)
	}
	devs := map[int][]model.FirewallDevice{}
	for _, fw := range fws {
		if devs[fw.ID], err = e.db.FirewallDevices(fw.ID); err != nil {
			e.t.Fatal(err)
		}
	}
	b, _ := json.Marshal(struct {
		S  store.State
		T  []model.Token
		F  []model.Firewall
		FD map[int][]model.FirewallDevice
	}{st, toks, fws, devs})
	return string(b)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
