package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandlerServesConsoleRoutesAndFiles checks what a browser gets for each kind of
// path: the console's own routes load index.html (so a reload or a shared link
// works), files load with their type, anything else is 404 — all under the CSP.
func TestHandlerServesConsoleRoutesAndFiles(t *testing.T) {
	h := Handler()
	tests := []struct {
		method, path string
		status       int
		contentType  string
		bodyHas      string
	}{
		{"GET", "/", 200, "text/html", `<script type="module" src="/js/main.js">`},
		{"GET", "/login", 200, "text/html", `id="main"`},
		{"GET", "/nodebalancers", 200, "text/html", `id="main"`},
		{"GET", "/nodebalancers/12/configurations/7", 200, "text/html", `id="main"`},
		{"GET", "/index.html", 200, "text/html", `id="main"`},
		{"GET", "/js/main.js", 200, "text/javascript", "Router"},
		{"GET", "/js/views/configs.js", 200, "text/javascript", "rebuild"},
		{"GET", "/app.css", 200, "text/css", ".node-row"},
		{"GET", "/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"HEAD", "/nodebalancers/1/summary", 200, "text/html", ""},
		{"GET", "/nodebalancers/missing.js", 404, "", ""},
		{"GET", "/secrets", 404, "", ""},
		{"GET", "/js/", 404, "", ""},
		{"GET", "/../web.go", 404, "", ""},
		{"POST", "/nodebalancers", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			csp := rec.Header().Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("CSP %q lacks %q", csp, d)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("CSP %q allows inline code", csp)
			}
			if ct := rec.Header().Get("Content-Type"); tt.contentType != "" && !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(rec.Body.String(), tt.bodyHas) {
				t.Errorf("body lacks %q", tt.bodyHas)
			}
		})
	}
}

// TestHandlerRevalidatesByETag: a browser that has a file gets 304 for it, and a file
// changed in a new binary (another ETag) is fetched again.
func TestHandlerRevalidatesByETag(t *testing.T) {
	h := Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/js/api.js", nil))
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || etag == "" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("first load: status %d, ETag %q, Cache-Control %q", rec.Code, etag, rec.Header().Get("Cache-Control"))
	}
	for _, tt := range []struct {
		ifNoneMatch string
		status      int
	}{{etag, http.StatusNotModified}, {`"stale"`, http.StatusOK}} {
		req := httptest.NewRequest("GET", "/js/api.js", nil)
		req.Header.Set("If-None-Match", tt.ifNoneMatch)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("If-None-Match %s: status %d, want %d", tt.ifNoneMatch, rec.Code, tt.status)
		}
	}
	// Every console route shares index.html's ETag, so moving around revalidates once.
	a, b := httptest.NewRecorder(), httptest.NewRecorder()
	h.ServeHTTP(a, httptest.NewRequest("GET", "/", nil))
	h.ServeHTTP(b, httptest.NewRequest("GET", "/nodebalancers/3/settings", nil))
	if a.Header().Get("ETag") != b.Header().Get("ETag") {
		t.Errorf("index ETags differ: %s vs %s", a.Header().Get("ETag"), b.Header().Get("ETag"))
	}
}
