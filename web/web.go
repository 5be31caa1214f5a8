// Package web is nodebalancer's console: static HTML, CSS and ES modules embedded in
// the binary and served at /. The console is just another API client: it calls /v4
// with the token the user signs in with, so it needs nothing from the server but
// these files.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// csp keeps every script and style in the console's own files: no inline code, no
// third-party origin, so a label or tag a user typed can never run as script.
const csp = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, read once, with the strong ETag browsers revalidate.
type asset struct {
	body []byte
	etag string
}

// appRoutes are the first path segments the console routes itself (History API):
// a reload or a shared link on one of them gets index.html.
var appRoutes = map[string]bool{"": true, "login": true, "nodebalancers": true}

// Handler serves the console: the embedded files by path, the choices module made
// from model's registry (choices.go), index.html for the console's own routes (/,
// /login, /nodebalancers/…), 404 for anything else.
// Every answer carries the strict CSP; files are revalidated by ETag on each load so
// a new binary's console is picked up at once.
func Handler() http.Handler {
	assets := map[string]asset{}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		assets[strings.TrimPrefix(p, "static")] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	choices := choicesModule()
	sum := sha256.Sum256(choices)
	assets[choicesPath] = asset{body: choices, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	index := assets["/index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		name := p
		a, ok := assets[p]
		if !ok {
			first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
			if !appRoutes[first] || path.Ext(p) != "" {
				http.NotFound(w, r)
				return
			}
			a, name = index, "/index.html"
		}
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}
