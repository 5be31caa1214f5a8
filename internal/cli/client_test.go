package cli

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAPIRoot(t *testing.T) {
	tests := []struct{ in, base, display string }{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/v4", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080/v4", "http://127.0.0.1:8080"},
		{"127.0.0.1:8080", "http://127.0.0.1:8080/v4", "http://127.0.0.1:8080"},
		{"https://lb.example.test/v4", "https://lb.example.test/v4", "https://lb.example.test/v4"},
		{"https://lb.example.test/api/v4beta/", "https://lb.example.test/api/v4beta", "https://lb.example.test/api/v4beta"},
		{"http://u:p@127.0.0.1:8080/?x=1#f", "http://127.0.0.1:8080/v4", "http://127.0.0.1:8080"},
	}
	for _, tc := range tests {
		base, display, err := apiRoot(tc.in)
		if err != nil || base != tc.base || display != tc.display {
			t.Errorf("apiRoot(%q) = %q, %q, %v; want %q, %q", tc.in, base, display, err, tc.base, tc.display)
		}
	}
	for _, bad := range []string{"", "ftp://127.0.0.1", "http://", "http://[::1"} {
		if _, _, err := apiRoot(bad); err == nil {
			t.Errorf("apiRoot(%q) accepted", bad)
		}
	}
}

func TestAnswersThatAreNotTheAPIs(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v4/nodebalancers/1":
			w.Write([]byte("<html>hello</html>"))
		default:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>bad gateway</html>"))
		}
	}))
	defer srv.Close()
	c, err := newClient(srv.URL, "t")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.do(context.Background(), http.MethodGet, "/nodebalancers/1", nil)
	if err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("HTML with 200: %v", err)
	}
	_, err = c.do(context.Background(), http.MethodGet, "/nodebalancers/2", nil)
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Error() != "HTTP 502 Bad Gateway" {
		t.Fatalf("502 page: %v", err)
	}
	r := runRaw("nodebalancers", "view", "2", "--url", srv.URL, "--token", "t")
	if r.code != 1 || r.stderr != "HTTP 502 Bad Gateway\n" {
		t.Fatalf("CLI on a 502: %+v", r)
	}
}

func TestRequestsCarryTheTokenAndOnlyTheGivenFields(t *testing.T) {
	t.Parallel()
	type seen struct{ method, path, auth, body string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := new(strings.Builder)
		buf := make([]byte, 512)
		for {
			n, err := r.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), b.String()}
		w.Write([]byte(`{"id":3}`))
	}))
	defer srv.Close()
	r := runRaw("nodebalancers", "node-update", "1", "2", "3", "--weight", "9", "--url", srv.URL, "--token", "sekrit", "--json")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	s := <-got
	if s.method != "PUT" || s.path != "/v4/nodebalancers/1/configs/2/nodes/3" || s.auth != "Bearer sekrit" || s.body != `{"weight":9}` {
		t.Fatalf("request %+v", s)
	}
}
