package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// writeJSON sends v with status. The Content-Type is exactly "application/json":
// linodego compares it with its Accept header before it reads an error body.
func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errors":[{"reason":"` + reasonInternal + `"}]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
	return status
}

// body reads the request body, at most MaxBodyBytes (413 beyond).
func (c *call) body() ([]byte, error) {
	tooLarge := &apiError{http.StatusRequestEntityTooLarge, model.Errors{{
		Reason: "Request body too large: at most " + strconv.Itoa(MaxBodyBytes) + " bytes"}}}
	if c.r.ContentLength > MaxBodyBytes {
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		return nil, badRequest("", "Could not read the request body")
	}
	return b, nil
}

// Pagination bounds, as Linode documents them.
const (
	defaultPageSize = 100
	minPageSize     = 25
	maxPageSize     = 500
)

// page is one page of a list, Linode's envelope.
type page struct {
	Data    []any `json:"data"`
	Page    int   `json:"page"`
	Pages   int   `json:"pages"`
	Results int   `json:"results"`
}

// pageParams reads ?page and ?page_size.
func pageParams(r *http.Request) (pg, size int, err error) {
	q := r.URL.Query()
	pg, size = 1, defaultPageSize
	if v, ok := q["page"]; ok {
		n, e := strconv.Atoi(v[0])
		if e != nil || n < 1 {
			return 0, 0, badRequest("page", "page must be an integer of at least 1")
		}
		pg = n
	}
	if v, ok := q["page_size"]; ok {
		n, e := strconv.Atoi(v[0])
		if e != nil || n < minPageSize || n > maxPageSize {
			return 0, 0, badRequest("page_size", "page_size must be an integer between "+
				strconv.Itoa(minPageSize)+" and "+strconv.Itoa(maxPageSize))
		}
		size = n
	}
	return pg, size, nil
}

// list answers a list endpoint: X-Filter, ordering, then the requested page, rendered
// with render. A page past the last is empty but still tells pages and results.
func list[T any](c *call, items []T, fields filterFields, get func(T) getter, render func(T) (any, error)) (any, error) {
	pg, size, err := pageParams(c.r)
	if err != nil {
		return nil, err
	}
	f, err := parseFilter(c.r.Header.Get("X-Filter"), fields)
	if err != nil {
		return nil, err
	}
	items = applyFilter(f, fields, items, get)
	total := len(items)
	pages := max(1, (total+size-1)/size)
	out := page{Data: []any{}, Page: pg, Pages: pages, Results: total}
	// Compare before multiplying: page may be huge.
	if pg <= pages {
		from := (pg - 1) * size
		for _, it := range items[from:min(total, from+size)] {
			v, err := render(it)
			if err != nil {
				return nil, err
			}
			out.Data = append(out.Data, v)
		}
	}
	return out, nil
}

// timeLayout is how Linode shows times: UTC without a zone.
const timeLayout = "2006-01-02T15:04:05"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// ---- Response shapes (field names and tags as linodego reads them)

type transferJSON struct {
	In    float64 `json:"in"`
	Out   float64 `json:"out"`
	Total float64 `json:"total"`
}

type nodeBalancerJSON struct {
	ID                    int          `json:"id"`
	Label                 string       `json:"label"`
	Region                string       `json:"region"`
	Hostname              string       `json:"hostname"`
	IPv4                  string       `json:"ipv4"`
	IPv6                  *string      `json:"ipv6"`
	ClientConnThrottle    int          `json:"client_conn_throttle"`
	ClientUDPSessThrottle int          `json:"client_udp_sess_throttle"`
	Tags                  []string     `json:"tags"`
	Transfer              transferJSON `json:"transfer"`
	Type                  model.Type   `json:"type"`
	Locks                 []string     `json:"locks"`
	Created               string       `json:"created"`
	Updated               string       `json:"updated"`
}

type nodesStatusJSON struct {
	Up   int `json:"up"`
	Down int `json:"down"`
}

type configJSON struct {
	ID                int                 `json:"id"`
	Port              int                 `json:"port"`
	Protocol          model.Protocol      `json:"protocol"`
	Algorithm         model.Algorithm     `json:"algorithm"`
	Stickiness        model.Stickiness    `json:"stickiness"`
	Check             model.Check         `json:"check"`
	CheckInterval     int                 `json:"check_interval"`
	CheckTimeout      int                 `json:"check_timeout"`
	CheckAttempts     int                 `json:"check_attempts"`
	CheckPath         string              `json:"check_path"`
	CheckBody         string              `json:"check_body"`
	CheckPassive      bool                `json:"check_passive"`
	ProxyProtocol     model.ProxyProtocol `json:"proxy_protocol"`
	CipherSuite       model.CipherSuite   `json:"cipher_suite"`
	UDPCheckPort      int                 `json:"udp_check_port"`
	UDPSessionTimeout int                 `json:"udp_session_timeout"`
	SSLCert           *string             `json:"ssl_cert"`
	SSLKey            *string             `json:"ssl_key"`
	SSLCommonName     string              `json:"ssl_commonname"`
	SSLFingerprint    string              `json:"ssl_fingerprint"`
	NodesStatus       nodesStatusJSON     `json:"nodes_status"`
	NodeBalancerID    int                 `json:"nodebalancer_id"`
	// Listener is not Linode's: whether this host listens for the config. Linode's
	// clients ignore fields they do not know, and the API ignores it when echoed back.
	Listener *listenerJSON `json:"listener,omitempty"`
}

type listenerJSON struct {
	State    model.ListenerState `json:"state"`
	Address  string              `json:"address,omitempty"`
	Error    string              `json:"error,omitempty"`
	Since    string              `json:"since,omitempty"`
	Attempts int                 `json:"attempts,omitempty"`
}

type nodeJSON struct {
	ID             int              `json:"id"`
	Address        string           `json:"address"`
	Label          string           `json:"label"`
	Status         model.NodeStatus `json:"status"`
	Weight         int              `json:"weight"`
	Mode           model.Mode       `json:"mode"`
	ConfigID       int              `json:"config_id"`
	NodeBalancerID int              `json:"nodebalancer_id"`
}

type tokenJSON struct {
	ID      int     `json:"id"`
	Label   string  `json:"label"`
	Scopes  string  `json:"scopes"`
	Created string  `json:"created"`
	Expiry  *string `json:"expiry"`
	Token   string  `json:"token"`
}

type priceJSON struct {
	Hourly  float64 `json:"hourly"`
	Monthly float64 `json:"monthly"`
}

type typeJSON struct {
	ID           string      `json:"id"`
	Label        string      `json:"label"`
	Price        priceJSON   `json:"price"`
	RegionPrices []priceJSON `json:"region_prices"`
	Transfer     int         `json:"transfer"`
}

// hostname derives a NodeBalancer's hostname from its address, as Linode's reverse
// DNS names do: 192.0.2.1 → 192-0-2-1.<domain>.
func (a *API) hostname(ipv4 string) string {
	b := []byte(ipv4)
	for i, c := range b {
		if c == '.' || c == ':' {
			b[i] = '-'
		}
	}
	return string(b) + "." + a.o.HostnameDomain
}

func (a *API) renderNodeBalancer(nb model.NodeBalancer) nodeBalancerJSON {
	out := nodeBalancerJSON{
		ID: nb.ID, Label: nb.Label, Region: nb.Region, Hostname: a.hostname(nb.IPv4),
		IPv4: nb.IPv4, ClientConnThrottle: nb.ClientConnThrottle,
		ClientUDPSessThrottle: nb.ClientUDPSessThrottle, Tags: nb.Tags, Type: nb.Type,
		Locks: []string{}, Created: formatTime(nb.Created), Updated: formatTime(nb.Updated),
	}
	if nb.IPv6 != "" {
		v6 := nb.IPv6
		out.IPv6 = &v6
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Type == "" {
		out.Type = model.DefaultType
	}
	if a.o.Transfer != nil {
		out.Transfer.In, out.Transfer.Out, out.Transfer.Total = a.o.Transfer.NodeBalancerTransfer(nb.ID)
	}
	return out
}

// status is a node's status as the API shows it: a node in mode reject is always
// DOWN; otherwise the health checker's word, "Unknown" without one.
func (a *API) status(n model.Node) model.NodeStatus {
	if n.Mode == model.ModeReject {
		return model.StatusDown
	}
	if a.o.Status == nil {
		return model.StatusUnknown
	}
	switch s := a.o.Status.NodeStatus(n.ConfigID, n.ID); s {
	case model.StatusUp, model.StatusDown:
		return s
	}
	return model.StatusUnknown
}

func (a *API) renderNode(n model.Node) nodeJSON {
	return nodeJSON{
		ID: n.ID, Address: n.Address, Label: n.Label, Status: a.status(n), Weight: n.Weight,
		Mode: n.Mode, ConfigID: n.ConfigID, NodeBalancerID: n.NodeBalancerID,
	}
}

func (a *API) renderConfig(c model.Config, nodes []model.Node) configJSON {
	out := configJSON{
		ID: c.ID, Port: c.Port, Protocol: c.Protocol, Algorithm: c.Algorithm, Stickiness: c.Stickiness,
		Check: c.Check, CheckInterval: c.CheckInterval, CheckTimeout: c.CheckTimeout,
		CheckAttempts: c.CheckAttempts, CheckPath: c.CheckPath, CheckBody: c.CheckBody,
		CheckPassive: c.CheckPassive, ProxyProtocol: c.ProxyProtocol, CipherSuite: c.CipherSuite,
		UDPCheckPort: c.UDPCheckPort, UDPSessionTimeout: model.UDPSessionTimeout,
		NodeBalancerID: c.NodeBalancerID,
	}
	redacted := model.Redacted
	if c.SSLCert != "" {
		out.SSLCert = &redacted
		out.SSLCommonName, out.SSLFingerprint = model.CertInfo(c.SSLCert)
	}
	if c.SSLKey != "" {
		out.SSLKey = &redacted
	}
	if a.o.Listeners != nil {
		st := a.o.Listeners.ListenerStatus(c.ID)
		out.Listener = &listenerJSON{State: st.State, Address: st.Address, Error: st.Error, Attempts: st.Attempts}
		if !st.Since.IsZero() {
			out.Listener.Since = formatTime(st.Since)
		}
	}
	// Linode's nodes_status has only up and down: an Unknown node (no verdict yet, or
	// check none) is in neither, so up+down may be less than the number of nodes.
	for _, n := range nodes {
		switch a.status(n) {
		case model.StatusUp:
			out.NodesStatus.Up++
		case model.StatusDown:
			out.NodesStatus.Down++
		}
	}
	return out
}

func renderToken(t model.Token, secret string) tokenJSON {
	out := tokenJSON{ID: t.ID, Label: t.Label, Scopes: t.Scopes, Created: formatTime(t.Created), Token: t.Prefix}
	if secret != "" {
		out.Token = secret
	}
	if t.Expiry != nil {
		s := formatTime(*t.Expiry)
		out.Expiry = &s
	}
	return out
}
