package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// client is a small typed client for the balancer's Linode v4 API. Objects stay raw
// JSON so that --json prints exactly what the API sent and tables can show any field;
// what is typed is the part a CLI must get right: paths, pagination, the error
// envelope and transport failures.
type client struct {
	base     string // API root, e.g. http://127.0.0.1:8080/v4
	display  string // the balancer's URL as messages show it
	token    string
	pageSize int
	http     *http.Client
}

// Request and response bounds.
const (
	requestTimeout  = 60 * time.Second
	maxResponse     = 64 << 20 // a list of 1000 nodes is well under 1 MB
	defaultPageSize = 500      // the API's maximum: fewest round trips
)

// newClient returns a client for the balancer at rawURL (see apiRoot).
func newClient(rawURL, token string) (*client, error) {
	base, display, err := apiRoot(rawURL)
	if err != nil {
		return nil, err
	}
	return &client{
		base: base, display: display, token: token, pageSize: defaultPageSize,
		http: &http.Client{Timeout: requestTimeout},
	}, nil
}

// apiRoot turns what a user gives as --url into the API root: a scheme is optional
// (http assumed), and /v4 is appended unless the path already ends in /v4 or /v4beta.
func apiRoot(raw string) (base, display string, err error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", "", usageErrorf("--url %q is not an http(s) URL such as http://127.0.0.1:8080", raw)
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	u.Path = strings.TrimSuffix(u.Path, "/")
	display = u.String()
	if !strings.HasSuffix(u.Path, "/v4") && !strings.HasSuffix(u.Path, "/v4beta") {
		u.Path += "/v4"
	}
	return u.String(), display, nil
}

// apiError is a refusal from the API: its status and Linode's error envelope.
type apiError struct {
	Status int
	Errors []fieldError
	Hint   string // the CLI's own explanation, printed after the API's reasons
}

// fieldError is one entry of the envelope; Field is empty when the reason is not
// about one field.
type fieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e *apiError) Error() string {
	return strings.Join(e.lines(), "; ")
}

// lines renders each entry as "field: reason" (or the reason alone).
func (e *apiError) lines() []string {
	out := make([]string, 0, len(e.Errors))
	for _, fe := range e.Errors {
		if fe.Field == "" {
			out = append(out, fe.Reason)
		} else {
			out = append(out, fe.Field+": "+fe.Reason)
		}
	}
	return out
}

// parseAPIError reads an error answer; a body that is not Linode's envelope (a proxy's
// HTML page, say) is reported by its status.
func parseAPIError(status int, body []byte) *apiError {
	var env struct {
		Errors []fieldError `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		return &apiError{Status: status, Errors: env.Errors}
	}
	return &apiError{Status: status, Errors: []fieldError{{Reason: "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)}}}
}

// connError is a failure to talk to the balancer at all.
type connError struct {
	url string
	err error
}

func (e *connError) Error() string {
	if errors.Is(e.err, syscall.ECONNREFUSED) {
		return "cannot connect to " + e.url + ": connection refused (is `nodebalancer serve` running there? set --url or NODEBALANCER_URL)"
	}
	return "cannot reach " + e.url + ": " + e.err.Error()
}

func (e *connError) Unwrap() error { return e.err }

// do sends one request (body marshalled as JSON when not nil) and returns the JSON
// answer of a 200, or an *apiError / *connError.
func (c *client) do(ctx context.Context, method, path string, body any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "nodebalancer-cli")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already
		}
		return nil, &connError{c.display, err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, &connError{c.display, fmt.Errorf("reading the answer: %w", err)}
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("the answer from %s is larger than %d MB", c.display, maxResponse>>20)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, parseAPIError(resp.StatusCode, data)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%s answered %s %s with something that is not JSON: is it a nodebalancer API?", c.display, method, path)
	}
	return data, nil
}

// list fetches every page of a list endpoint and returns the objects in order.
func (c *client) list(ctx context.Context, path string) ([]json.RawMessage, error) {
	var all []json.RawMessage
	for page := 1; ; page++ {
		raw, err := c.do(ctx, http.MethodGet, path+"?page="+strconv.Itoa(page)+"&page_size="+strconv.Itoa(c.pageSize), nil)
		if err != nil {
			return nil, err
		}
		var env struct {
			Data  []json.RawMessage `json:"data"`
			Pages int               `json:"pages"`
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, fmt.Errorf("%s: the list answer is not Linode's page envelope: %w", path, err)
		}
		all = append(all, env.Data...)
		if page >= env.Pages || len(env.Data) == 0 {
			if all == nil {
				all = []json.RawMessage{}
			}
			return all, nil
		}
	}
}

// Paths of the API's objects.

// nbPath is a NodeBalancer's path; the helpers below nest under it.
func nbPath(nb int) string { return "/nodebalancers/" + strconv.Itoa(nb) }

func configsPath(nb int) string { return nbPath(nb) + "/configs" }

func configPath(nb, cfg int) string { return configsPath(nb) + "/" + strconv.Itoa(cfg) }

func nodesPath(nb, cfg int) string { return configPath(nb, cfg) + "/nodes" }

func nodePath(nb, cfg, node int) string { return nodesPath(nb, cfg) + "/" + strconv.Itoa(node) }

func tokenPath(id int) string { return "/profile/tokens/" + strconv.Itoa(id) }
