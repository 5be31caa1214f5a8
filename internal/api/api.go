// Package api serves nodebalancer's Linode API v4-compatible REST API for the
// NodeBalancer tree (/v4 and /v4beta): NodeBalancers, their configs and nodes, plan
// types, personal access tokens; with bearer-token auth, pagination, X-Filter and
// Linode's error envelope, so Linode's own clients (linodego, linode-cli, terraform)
// work against it unchanged. Validation rules live in model and cross-object rules in
// store; this package only translates between HTTP and them.
package api

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
)

// NodeStatusSource tells the status of a node as this host's health checker sees
// it. Without one every node shows "Unknown" (and a node in mode reject "DOWN").
type NodeStatusSource interface {
	NodeStatus(configID, nodeID int) model.NodeStatus
}

// TransferSource tells a NodeBalancer's traffic this month in megabytes. Without one
// the transfer fields show zeros.
type TransferSource interface {
	NodeBalancerTransfer(id int) (in, out, total float64)
}

// StatsSource serves GET /nodebalancers/{id}/stats: the value returned is sent as
// the JSON body (Linode's {"data":{"connections":…,"traffic":…},"title":…}). query is
// the request's query string, for options such as the series' period. An error
// matching store.ErrNotFound answers 404, model.Errors 400, any other error 500.
// Without a source the endpoint answers 404.
type StatsSource interface {
	NodeBalancerStats(id int, query url.Values) (any, error)
}

// ListenerSource tells whether this host listens for a config (the data plane's
// Plane.ListenerStatus). Without one configs have no "listener" field.
type ListenerSource interface {
	ListenerStatus(configID int) model.ListenerStatus
}

// Options configure the API.
type Options struct {
	// DB is where the state lives. Required.
	DB *store.DB
	// Policy carries the region and the backend ranges validation needs.
	Policy model.Policy
	// Status, Transfer, Stats and Listeners are optional live sources (see their types).
	Status    NodeStatusSource
	Transfer  TransferSource
	Stats     StatsSource
	Listeners ListenerSource
	// HostnameDomain is the domain of each NodeBalancer's hostname,
	// "<ipv4 with dashes>.<domain>"; DefaultHostnameDomain when empty.
	HostnameDomain string
	// Now is the clock for token expiry; time.Now when nil.
	Now func() time.Time
	// Log receives one Debug line per request and an Error line per failure;
	// slog.Default() when nil. Tokens and keys are never logged.
	Log *slog.Logger
	// Committed, when set, is called after a write request succeeded (its
	// transaction committed) and before its answer is written. The server passes
	// the data plane's CatchUp, so that a change is served by the time the client
	// hears that it is stored.
	Committed func()
}

// DefaultHostnameDomain is the hostname domain Linode documents for NodeBalancers.
const DefaultHostnameDomain = "ip.linodeusercontent.com"

// MaxBodyBytes is the largest request body accepted; larger ones get 413.
const MaxBodyBytes = 1 << 20

// API is the http.Handler of the /v4 tree.
type API struct {
	o         Options
	log       *slog.Logger
	tokens    *tokenCache
	authLimit authLimiter // failed authentications per client address
}

// New returns the API handler. Mount it for the paths /v4/ and /v4beta/ (it sees
// the full path, prefix included).
func New(o Options) *API {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.HostnameDomain == "" {
		o.HostnameDomain = DefaultHostnameDomain
	}
	return &API{o: o, log: o.Log, tokens: &tokenCache{db: o.DB}}
}

// access is what a route needs from the caller's token.
type access uint8

const (
	public    access = iota // no token needed
	readNB                  // nodebalancers:read_only or better
	writeNB                 // nodebalancers:read_write or *
	tokenMgmt               // managing tokens: nodebalancers:read_write or *
	readIPs                 // reserved addresses: ips:read_only or better, as Linode
	writeIPs                // ips:read_write or *
	anyToken                // any valid token, whatever its scopes (GET /profile)
	readFW                  // firewall:read_only or better
	writeFW                 // firewall:read_write or *
)

// scopeNeeded is the scope resource and level an access needs.
func (need access) scopeNeeded() (string, level) {
	switch need {
	case readNB:
		return "nodebalancers", levelReadOnly
	case readIPs:
		return "ips", levelReadOnly
	case writeIPs:
		return "ips", levelReadWrite
	case readFW:
		return "firewall", levelReadOnly
	case writeFW:
		return "firewall", levelReadWrite
	case anyToken, public:
		return "", levelNone
	}
	return "nodebalancers", levelReadWrite
}

// call is one request on its way through a handler.
type call struct {
	a    *API
	w    http.ResponseWriter
	r    *http.Request
	ids  []int
	slug string // the "*" segment of the route, such as a region id
	// ignored lists the body fields this server does not know, for the debug log.
	ignored []string
	token   model.Token
	scopes  scopeSet
}

// handler answers one call: a body to send with 200, or an error to turn into the
// error envelope.
type handler func(c *call) (any, error)

type route struct {
	path    []string // literal segments, "#" for a positive integer id, "*" for any one segment (a slug)
	methods map[string]handler
	need    func(method string) access
}

func publicAccess(string) access { return public }

func nbAccess(method string) access {
	if method == http.MethodGet {
		return readNB
	}
	return writeNB
}

func ipsAccess(method string) access {
	if method == http.MethodGet {
		return readIPs
	}
	return writeIPs
}

var routes = []route{
	{[]string{"nodebalancers"}, map[string]handler{"GET": listNodeBalancers, "POST": createNodeBalancer}, nbAccess},
	{[]string{"nodebalancers", "types"}, map[string]handler{"GET": listTypes}, publicAccess},
	{[]string{"nodebalancers", "#"}, map[string]handler{"GET": getNodeBalancer, "PUT": updateNodeBalancer, "DELETE": deleteNodeBalancer}, nbAccess},
	{[]string{"nodebalancers", "#", "stats"}, map[string]handler{"GET": getStats}, nbAccess},
	{[]string{"nodebalancers", "#", "firewalls"}, map[string]handler{"GET": listNodeBalancerFirewalls}, nbAccess},
	{[]string{"nodebalancers", "#", "vpcs"}, map[string]handler{"GET": listVPCConfigs}, nbAccess},
	{[]string{"nodebalancers", "#", "vpcs", "#"}, map[string]handler{"GET": getVPCConfig}, nbAccess},
	{[]string{"nodebalancers", "#", "configs"}, map[string]handler{"GET": listConfigs, "POST": createConfig}, nbAccess},
	{[]string{"nodebalancers", "#", "configs", "#"}, map[string]handler{"GET": getConfig, "PUT": updateConfig, "DELETE": deleteConfig}, nbAccess},
	{[]string{"nodebalancers", "#", "configs", "#", "rebuild"}, map[string]handler{"POST": rebuildConfig}, nbAccess},
	{[]string{"nodebalancers", "#", "configs", "#", "nodes"}, map[string]handler{"GET": listNodes, "POST": createNode}, nbAccess},
	{[]string{"nodebalancers", "#", "configs", "#", "nodes", "#"}, map[string]handler{"GET": getNode, "PUT": updateNode, "DELETE": deleteNode}, nbAccess},
	{[]string{"networking", "firewalls"}, map[string]handler{"GET": listFirewallsAll, "POST": createFirewall}, fwAccess},
	{[]string{"networking", "firewalls", "#"}, map[string]handler{"GET": getFirewall, "PUT": updateFirewall, "DELETE": deleteFirewall}, fwAccess},
	{[]string{"networking", "firewalls", "#", "rules"}, map[string]handler{"GET": getFirewallRules, "PUT": updateFirewallRules}, fwAccess},
	{[]string{"networking", "firewalls", "#", "devices"}, map[string]handler{"GET": listFirewallDevices, "POST": createFirewallDevice}, fwAccess},
	{[]string{"networking", "firewalls", "#", "devices", "#"}, map[string]handler{"GET": getFirewallDevice, "DELETE": deleteFirewallDevice}, fwAccess},
	{[]string{"linode", "types"}, map[string]handler{"GET": listLinodeTypes}, publicAccess},
	{[]string{"regions"}, map[string]handler{"GET": listRegions}, publicAccess},
	{[]string{"regions", "*"}, map[string]handler{"GET": getRegion}, publicAccess},
	{[]string{"networking", "reserved", "ips"}, map[string]handler{"GET": listReservedIPs, "POST": reserveIP}, ipsAccess},
	{[]string{"networking", "reserved", "ips", "*"}, map[string]handler{"GET": getReservedIP, "PUT": updateReservedIP, "DELETE": deleteReservedIP}, ipsAccess},
	{[]string{"profile"}, map[string]handler{"GET": getProfile}, func(string) access { return anyToken }},
	{[]string{"profile", "tokens"}, map[string]handler{"GET": listTokens, "POST": createToken}, func(string) access { return tokenMgmt }},
	{[]string{"profile", "tokens", "#"}, map[string]handler{"GET": getToken, "PUT": updateToken, "DELETE": deleteToken}, func(string) access { return tokenMgmt }},
}

// match finds the route for the segments after the version, with its ids and slug.
func match(segs []string) (*route, []int, string) {
	for i := range routes {
		rt := &routes[i]
		if len(rt.path) != len(segs) {
			continue
		}
		var ids []int
		slug := ""
		ok := true
		for j, p := range rt.path {
			if p == "*" {
				slug = segs[j]
			} else if p == "#" {
				id, err := strconv.Atoi(segs[j])
				if err != nil || id <= 0 || segs[j][0] == '+' {
					ok = false
					break
				}
				ids = append(ids, id)
			} else if p != segs[j] {
				ok = false
				break
			}
		}
		if ok {
			return rt, ids, slug
		}
	}
	return nil, nil, ""
}

// segments splits a request path after /v4 or /v4beta; ok is false for other paths.
func segments(path string) ([]string, bool) {
	var rest string
	switch {
	case strings.HasPrefix(path, "/v4beta/"):
		rest = path[len("/v4beta/"):]
	case strings.HasPrefix(path, "/v4/"):
		rest = path[len("/v4/"):]
	default:
		return nil, false
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, false
	}
	return strings.Split(rest, "/"), true
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &call{a: a, w: w, r: r}
	status := a.serve(w, c)
	if a.log.Enabled(r.Context(), slog.LevelDebug) {
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Duration("duration", time.Since(start)),
		}
		if c.token.ID != 0 {
			attrs = append(attrs, slog.Int("token_id", c.token.ID))
		}
		if len(c.ignored) > 0 {
			// Names only, never values: bodies are not logged.
			slices.Sort(c.ignored)
			attrs = append(attrs, slog.Any("ignored_fields", c.ignored))
		}
		a.log.LogAttrs(r.Context(), slog.LevelDebug, "api request", attrs...)
	}
}

func (a *API) serve(w http.ResponseWriter, c *call) (status int) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			a.log.Error("api handler panicked", "method", c.r.Method, "path", c.r.URL.Path, "panic", p)
			status = writeJSON(w, http.StatusInternalServerError, envelope(model.Errors{{Reason: reasonInternal}}))
		}
	}()
	segs, ok := segments(c.r.URL.Path)
	if !ok {
		return writeErr(w, errNotFound)
	}
	rt, ids, slug := match(segs)
	if rt == nil {
		return writeErr(w, errNotFound)
	}
	h, ok := rt.methods[c.r.Method]
	if !ok {
		allow := make([]string, 0, len(rt.methods))
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			if rt.methods[m] != nil {
				allow = append(allow, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return writeErr(w, &apiError{http.StatusMethodNotAllowed, model.Errors{{Reason: "Method not allowed"}}})
	}
	c.ids, c.slug = ids, slug
	if err := a.authorize(c, rt.need(c.r.Method)); err != nil {
		return writeErr(w, err)
	}
	body, err := h(c)
	if err == nil && c.r.Method != http.MethodGet && a.o.Committed != nil {
		a.o.Committed()
	}
	if err != nil {
		if st := statusOf(err); st >= 500 {
			a.log.Error("api request failed", "method", c.r.Method, "path", c.r.URL.Path, "error", err)
		}
		return writeErr(w, err)
	}
	if body == nil {
		body = struct{}{}
	}
	return writeJSON(w, http.StatusOK, body)
}

// Reasons worded as Linode words them.
const (
	reasonInvalidToken = "Invalid Token"
	reasonForbidden    = "Your OAuth token is not authorized to use this endpoint."
	reasonNotFound     = "Not found"
	reasonInternal     = "Internal server error"
)

// authorize checks the caller's token against what the route needs.
func (a *API) authorize(c *call, need access) error {
	if need == public {
		return nil
	}
	secret, ok := bearer(c.r)
	if !ok {
		return errUnauthorized
	}
	t, ok, err := a.tokens.lookup(secret)
	if err != nil {
		return err
	}
	if !ok || (t.Expiry != nil && !a.o.Now().Before(*t.Expiry)) {
		return a.authFailed(c)
	}
	if !t.scopesOK {
		return errForbidden // a stored token with scopes we no longer read grants nothing
	}
	c.token, c.scopes = t.Token, t.scopes
	if res, lv := need.scopeNeeded(); res != "" && !t.scopes.allows(res, lv) {
		return errForbidden
	}
	return nil
}

// TokensChanged tells the API that tokens changed in the store behind its back
// (another host sharing it created or revoked one): the next request reads them
// again, instead of after the cache's bounds.
func (a *API) TokensChanged() { a.tokens.invalidate() }

// RequireRead returns next guarded by the API's tokens: a request passes when it
// carries a valid token that may read NodeBalancers, and otherwise gets the API's own
// 401 or 403. It guards endpoints served beside the API, such as /metrics.
func (a *API) RequireRead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.authorize(&call{a: a, w: w, r: r}, readNB); err != nil {
			writeErr(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiError is an error with its HTTP status and envelope.
type apiError struct {
	status int
	errs   model.Errors
}

func (e *apiError) Error() string { return strconv.Itoa(e.status) + " " + e.errs.Error() }

var (
	errNotFound     = &apiError{http.StatusNotFound, model.Errors{{Reason: reasonNotFound}}}
	errUnauthorized = &apiError{http.StatusUnauthorized, model.Errors{{Reason: reasonInvalidToken}}}
	errForbidden    = &apiError{http.StatusForbidden, model.Errors{{Reason: reasonForbidden}}}
)

// badRequest is a 400 with one reason.
func badRequest(field, reason string) error {
	return &apiError{http.StatusBadRequest, model.Errors{{Field: field, Reason: reason}}}
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	if e, ok := errors.AsType[*apiError](err); ok {
		return e.status
	}
	if _, ok := errors.AsType[model.Errors](err); ok {
		return http.StatusBadRequest
	}
	if _, ok := errors.AsType[*filterError](err); ok {
		return http.StatusBadRequest
	}
	if errors.Is(err, store.ErrNotFound) {
		return http.StatusNotFound
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrConflict) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeErr sends err as Linode's error envelope, never leaking internal detail.
func writeErr(w http.ResponseWriter, err error) int {
	st := statusOf(err)
	var es model.Errors
	switch {
	case st == http.StatusInternalServerError:
		es = model.Errors{{Reason: reasonInternal}}
	case st == http.StatusNotFound && errors.Is(err, store.ErrNotFound):
		es = model.Errors{{Reason: reasonNotFound}}
	case st == http.StatusServiceUnavailable && (errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrConflict)):
		// The store's reason (etcd out of reach, no answer in time, a commit
		// etcd did not confirm) tells the client that a retry may succeed.
		es = model.Errors{{Reason: "the store cannot take requests now: " + err.Error()}}
	default:
		if e, ok := errors.AsType[*apiError](err); ok {
			es = e.errs
		} else if e, ok := errors.AsType[model.Errors](err); ok {
			es = e
		} else if e, ok := errors.AsType[*filterError](err); ok {
			es = model.Errors{{Reason: e.reason}}
		}
	}
	if len(es) == 0 {
		es = model.Errors{{Reason: http.StatusText(st)}}
	}
	return writeJSON(w, st, envelope(es))
}

type errorEnvelope struct {
	Errors model.Errors `json:"errors"`
}

func envelope(es model.Errors) errorEnvelope { return errorEnvelope{es} }
