package stats

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// PeriodParam is the query parameter of GET /v4/nodebalancers/{id}/stats that picks
// the series: "day" (the default, Linode's) or "hour".
const PeriodParam = "period"

// WrapAPI returns the API handler api extended with the period parameter of GET
// /v4/nodebalancers/{id}/stats. The API still answers every request first, so its
// auth, scopes and 404s apply unchanged; when it answers 200 and the request asked for
// period=hour, the body is replaced by the hour series. Other requests pass through.
func (s *Stats) WrapAPI(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := statsPath(r.URL.Path)
		if !ok || r.Method != http.MethodGet || !r.URL.Query().Has(PeriodParam) {
			api.ServeHTTP(w, r)
			return
		}
		rec := newRecorder()
		api.ServeHTTP(rec, r)
		p := Period(r.URL.Query().Get(PeriodParam))
		if rec.status != http.StatusOK || p == PeriodDay {
			rec.replay(w)
			return
		}
		if p != PeriodHour {
			writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []map[string]string{
				{"field": PeriodParam, "reason": `period must be "day" or "hour"`},
			}})
			return
		}
		nb, err := s.o.DB.NodeBalancer(id)
		if err != nil { // deleted since the API answered
			writeJSON(w, http.StatusNotFound, map[string]any{"errors": []map[string]string{{"reason": "Not found"}}})
			return
		}
		writeJSON(w, http.StatusOK, s.Series(id, nb.Label, PeriodHour))
	})
}

// statsPath returns the id of a /v4[beta]/nodebalancers/{id}/stats path.
func statsPath(p string) (int, bool) {
	switch {
	case strings.HasPrefix(p, "/v4/"):
		p = p[len("/v4/"):]
	case strings.HasPrefix(p, "/v4beta/"):
		p = p[len("/v4beta/"):]
	default:
		return 0, false
	}
	segs := strings.Split(strings.TrimSuffix(p, "/"), "/")
	if len(segs) != 3 || segs[0] != "nodebalancers" || segs[2] != "stats" || segs[1] == "" || segs[1][0] == '+' {
		return 0, false
	}
	id, err := strconv.Atoi(segs[1])
	return id, err == nil && id > 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// recorder keeps a response so it can be replayed or replaced.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) replay(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	w.WriteHeader(r.status)
	w.Write(r.body.Bytes())
}

// RequireAPIToken returns next guarded by the API's tokens: a request passes when its
// Authorization header holds a token that may read NodeBalancers (read_only or
// better), which api checks by answering an empty NodeBalancer list; otherwise the
// API's 401 or 403 answer is sent. Revoking the token revokes access at once.
func RequireAPIToken(api, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probe, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "/v4/nodebalancers?page_size=25", nil)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		probe.RemoteAddr = r.RemoteAddr
		probe.Header.Set("Authorization", r.Header.Get("Authorization"))
		probe.Header.Set("X-Filter", `{"id":0}`) // matches nothing: the answer is small
		rec := newRecorder()
		api.ServeHTTP(rec, probe)
		if rec.status != http.StatusOK {
			rec.replay(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}
