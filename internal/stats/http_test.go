package stats

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeAPI answers like the API would: 401 without the token "good", else 200 with
// a body naming the path it served.
type fakeAPI struct{ seen []*http.Request }

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.seen = append(f.seen, r)
	if r.Header.Get("Authorization") != "Bearer good" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"errors":[{"reason":"Invalid Token"}]}`))
		return
	}
	w.Write([]byte(`{"api":"` + r.URL.Path + `"}`))
}

func TestPeriodParameterOfStats(t *testing.T) {
	db := openDB(t, t.TempDir())
	nb, _, _ := createNB(t, db, "web")
	reg := NewRegistry()
	c := &clock{utc("2025-03-10T12:00:03Z")}
	s := newTestStats(t, db, reg, c)
	reg.NodeBalancer(nb.ID).Connections.Add(20)
	s.sample(utc("2025-03-10T12:00:10Z"))
	h := s.WrapAPI(&fakeAPI{})
	statsPath := "/v4/nodebalancers/" + itoa(nb.ID) + "/stats"

	tests := []struct {
		name, target, token string
		status              int
		body                string // substring
	}{
		{"hour series", statsPath + "?period=hour", "good", 200, `"title":"nodebalancer - web (1) - hour (10 sec avg)"`},
		{"v4beta too", "/v4beta/nodebalancers/" + itoa(nb.ID) + "/stats/?period=hour", "good", 200, `"connections":[[`},
		{"day is the API's own answer", statsPath + "?period=day", "good", 200, `{"api":"` + statsPath + `"}`},
		{"no period is the API's own answer", statsPath, "good", 200, `{"api":`},
		{"bad period", statsPath + "?period=week", "good", 400, `"field":"period"`},
		{"auth first", statsPath + "?period=hour", "bad", 401, `Invalid Token`},
		{"auth before a bad period", statsPath + "?period=week", "bad", 401, `Invalid Token`},
		{"other paths pass", "/v4/nodebalancers/" + itoa(nb.ID) + "?period=hour", "good", 200, `{"api":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			r.Header.Set("Authorization", "Bearer "+tt.token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("%d %s, want %d with %s", rec.Code, rec.Body, tt.status, tt.body)
			}
		})
	}

	// The hour series is the one Series returns.
	r := httptest.NewRequest("GET", statsPath+"?period=hour", nil)
	r.Header.Set("Authorization", "Bearer good")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var got Response
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Data.Connections) != 1 || got.Data.Connections[0][1] != 2 {
		t.Errorf("hour series %+v, want one point of 2 connections/s", got.Data)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestStatsPath(t *testing.T) {
	tests := []struct {
		path string
		id   int
		ok   bool
	}{
		{"/v4/nodebalancers/12/stats", 12, true},
		{"/v4beta/nodebalancers/12/stats/", 12, true},
		{"/v4/nodebalancers/+12/stats", 0, false},
		{"/v4/nodebalancers/0/stats", 0, false},
		{"/v4/nodebalancers/x/stats", 0, false},
		{"/v4/nodebalancers/12/configs", 0, false},
		{"/v5/nodebalancers/12/stats", 0, false},
		{"/v4/nodebalancers/12/stats/more", 0, false},
	}
	for _, tt := range tests {
		id, ok := statsPath(tt.path)
		if id != tt.id && tt.ok || ok != tt.ok {
			t.Errorf("statsPath(%q) = %d %v, want %d %v", tt.path, id, ok, tt.id, tt.ok)
		}
	}
}

func TestRequireAPIToken(t *testing.T) {
	api := &fakeAPI{}
	h := RequireAPIToken(api, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("metrics")) }))
	for _, tt := range []struct {
		token  string
		status int
		body   string
	}{{"good", 200, "metrics"}, {"bad", 401, "Invalid Token"}, {"", 401, "Invalid Token"}} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		if tt.token != "" {
			r.Header.Set("Authorization", "Bearer "+tt.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("token %q: %d %s, want %d %s", tt.token, rec.Code, rec.Body, tt.status, tt.body)
		}
	}
	// The probe is a read of NodeBalancers, the scope Prometheus needs.
	p := api.seen[0]
	if p.Method != "GET" || p.URL.Path != "/v4/nodebalancers" || p.Header.Get("X-Filter") == "" {
		t.Errorf("probe %s %s filter %q", p.Method, p.URL, p.Header.Get("X-Filter"))
	}
}
