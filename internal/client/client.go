// Package client is the typed Go client of rung's /v1 HTTP API, used by
// the command line. Every method takes a context first; errors from the
// server are *Error values that match the sentinels below with errors.Is.
package client

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
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
)

// Sentinels matched by *Error through errors.Is, by the server's code.
var (
	ErrNotFound     = errors.New("not found")
	ErrForbidden    = errors.New("forbidden")
	ErrUnauthorized = errors.New("unauthenticated")
	ErrInvalid      = errors.New("invalid")
	ErrConflict     = errors.New("conflict")
	ErrQuota        = errors.New("quota exceeded")
	ErrTooLarge     = errors.New("too large")
	ErrUnavailable  = errors.New("unavailable")
	// ErrExpired: a list's continue value is no longer valid (the list
	// changed since its first page); list again from the first page.
	ErrExpired = errors.New("list expired")
	// ErrTooMany: rate limited; retry after the answer's Retry-After.
	ErrTooMany = errors.New("too many requests")
)

// Error is an error answer of the API.
type Error struct {
	Status    int
	Code      string
	Message   string
	Details   []string
	RequestID string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	for _, d := range e.Details {
		b.WriteString("\n  - " + d)
	}
	return b.String()
}

// Is matches the sentinel for e's code.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case wire.CodeNotFound:
		return target == ErrNotFound
	case wire.CodeForbidden:
		return target == ErrForbidden
	case wire.CodeQuota:
		return target == ErrQuota || target == ErrForbidden
	case wire.CodeUnauthenticated:
		return target == ErrUnauthorized
	case wire.CodeInvalid:
		return target == ErrInvalid
	case wire.CodeConflict:
		return target == ErrConflict
	case wire.CodeTooLarge:
		return target == ErrTooLarge
	case wire.CodeUnavailable:
		return target == ErrUnavailable
	case wire.CodeExpired:
		return target == ErrExpired
	case wire.CodeTooMany:
		return target == ErrTooMany
	}
	return false
}

// Client talks to one rung server with one token. It is safe for
// concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: one with a 60 s timeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// New returns a client of the server at server (http://HOST:PORT or
// HOST:PORT) that authenticates with token.
func New(server, token string, opts ...Option) (*Client, error) {
	if server == "" {
		return nil, errors.New("no server: pass --server, or run `rung up`, which writes a client config")
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want http://HOST:PORT", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, token: token, http: &http.Client{Timeout: 60 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Server is the server's base URL.
func (c *Client) Server() string { return c.base.String() }

// do sends a request and decodes a 2xx JSON answer into out (if non-nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) (http.Header, error) {
	req, err := c.request(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.Header, errorOf(method, path, resp, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// request builds an authenticated request.
func (c *Client) request(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Request, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// errorOf turns a non-2xx answer into an *Error.
func errorOf(method, path string, resp *http.Response, data []byte) error {
	var body wire.Error
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(data, &body) != nil || body.Code == "" {
		e.Code = codeFor(resp.StatusCode)
		e.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
	} else {
		e.Code, e.Message, e.Details, e.RequestID = body.Code, body.Message, body.Details, body.RequestID
	}
	return e
}

// stream sends a request whose answer is read as it comes (watches, log
// follows): no overall timeout, only ctx; the caller closes the body.
func (c *Client) stream(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Response, error) {
	req, err := c.request(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, errorOf(method, path, resp, data)
	}
	return resp, nil
}

func codeFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return wire.CodeNotFound
	case http.StatusUnauthorized:
		return wire.CodeUnauthenticated
	case http.StatusForbidden:
		return wire.CodeForbidden
	case http.StatusServiceUnavailable:
		return wire.CodeUnavailable
	}
	return wire.CodeInternal
}

// Ref names one object: its kind, its tenant (Workloads only) and name.
type Ref struct {
	Kind   string
	Tenant string
	Name   string
}

func (r Ref) String() string {
	if r.Tenant != "" {
		return r.Kind + " " + r.Tenant + "/" + r.Name
	}
	return r.Kind + " " + r.Name
}

// plural is a kind's URL segment.
func plural(kind string) (string, error) {
	switch kind {
	case v1.KindTenant:
		return "tenants", nil
	case v1.KindTopology:
		return "topologies", nil
	case v1.KindPolicy:
		return "policies", nil
	case v1.KindWorkload:
		return "workloads", nil
	case v1.KindSecret:
		return "secrets", nil
	case v1.KindVolume:
		return "volumes", nil
	}
	return "", fmt.Errorf("unknown kind %q: use Tenant, Workload, Topology, Policy, Secret or Volume", kind)
}

// tenanted kinds belong to a tenant and live under /v1/tenants/T/.
func tenanted(kind string) bool {
	return kind == v1.KindWorkload || kind == v1.KindSecret || kind == v1.KindVolume
}

// path is the URL path of r, or of its collection when r.Name is empty.
func (r Ref) path() (string, error) {
	p, err := plural(r.Kind)
	if err != nil {
		return "", err
	}
	var s string
	switch {
	case tenanted(r.Kind) && r.Tenant != "":
		s = "/v1/tenants/" + url.PathEscape(r.Tenant) + "/" + p
	case tenanted(r.Kind) && r.Name != "":
		return "", fmt.Errorf("a %s is named TENANT/NAME", strings.ToLower(r.Kind))
	default:
		s = "/v1/" + p
	}
	if r.Name != "" {
		s += "/" + url.PathEscape(r.Name)
	}
	return s, nil
}

// Apply creates or updates obj, which is a v1.Tenant, v1.Workload,
// v1.Topology or v1.Policy (or a pointer to one).
func (c *Client) Apply(ctx context.Context, obj any) (wire.ApplyResult, error) {
	ref, err := RefOf(obj)
	if err != nil {
		return wire.ApplyResult{}, err
	}
	p, err := ref.path()
	if err != nil {
		return wire.ApplyResult{}, err
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return wire.ApplyResult{}, err
	}
	var res wire.ApplyResult
	_, err = c.do(ctx, http.MethodPut, p, nil, body, &res)
	return res, err
}

// RefOf names a manifest object.
func RefOf(obj any) (Ref, error) {
	switch o := obj.(type) {
	case v1.Tenant:
		return Ref{Kind: v1.KindTenant, Name: o.Metadata.Name}, nil
	case *v1.Tenant:
		return RefOf(*o)
	case v1.Topology:
		return Ref{Kind: v1.KindTopology, Name: o.Metadata.Name}, nil
	case *v1.Topology:
		return RefOf(*o)
	case v1.Policy:
		return Ref{Kind: v1.KindPolicy, Name: o.Metadata.Name}, nil
	case *v1.Policy:
		return RefOf(*o)
	case v1.Workload:
		return Ref{Kind: v1.KindWorkload, Tenant: o.Metadata.Tenant, Name: o.Metadata.Name}, nil
	case *v1.Workload:
		return RefOf(*o)
	case v1.Secret:
		return Ref{Kind: v1.KindSecret, Tenant: o.Metadata.Tenant, Name: o.Metadata.Name}, nil
	case *v1.Secret:
		return RefOf(*o)
	case v1.Volume:
		return Ref{Kind: v1.KindVolume, Tenant: o.Metadata.Tenant, Name: o.Metadata.Name}, nil
	case *v1.Volume:
		return RefOf(*o)
	}
	return Ref{}, fmt.Errorf("apply: %T is not a manifest object", obj)
}

// Applied is the outcome of applying one object of a Set.
type Applied struct {
	Ref    Ref
	Result wire.ApplyResult
	Err    error
}

// ApplySet applies every object of set in dependency order: tenants,
// topologies and policies, then workloads. It goes on after a failure
// and returns every outcome, and the first error.
func (c *Client) ApplySet(ctx context.Context, set *v1.Set) ([]Applied, error) {
	var out []Applied
	var first error
	for _, o := range Objects(set) {
		ref, _ := RefOf(o)
		res, err := c.Apply(ctx, o)
		out = append(out, Applied{Ref: ref, Result: res, Err: err})
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %w", ref, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return out, first
}

// Objects lists the objects of set in the order they can be applied:
// tenants, topologies, policies, secrets, then workloads (pointers into
// set).
// Deleting goes in the reverse order.
func Objects(set *v1.Set) []any {
	var objs []any
	for i := range set.Tenants {
		objs = append(objs, &set.Tenants[i])
	}
	for i := range set.Topologies {
		objs = append(objs, &set.Topologies[i])
	}
	for i := range set.Policies {
		objs = append(objs, &set.Policies[i])
	}
	for i := range set.Secrets { // before the workloads that use them
		objs = append(objs, &set.Secrets[i])
	}
	for i := range set.Volumes {
		objs = append(objs, &set.Volumes[i])
	}
	for i := range set.Workloads {
		objs = append(objs, &set.Workloads[i])
	}
	return objs
}

// Get reads one object into out (a *v1.Tenant, *v1.Workload, ... or
// *json.RawMessage) and returns its revision.
func (c *Client) Get(ctx context.Context, ref Ref, out any) (int64, error) {
	if ref.Name == "" {
		return 0, errors.New("get: no name")
	}
	p, err := ref.path()
	if err != nil {
		return 0, err
	}
	h, err := c.do(ctx, http.MethodGet, p, nil, nil, out)
	if err != nil {
		return 0, err
	}
	rev, _ := strconv.ParseInt(h.Get(wire.RevisionHeader), 10, 64)
	return rev, nil
}

// GetWorkload reads one workload.
func (c *Client) GetWorkload(ctx context.Context, tenant, name string) (*v1.Workload, error) {
	var w v1.Workload
	if _, err := c.Get(ctx, Ref{Kind: v1.KindWorkload, Tenant: tenant, Name: name}, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// GetTenant reads one tenant.
func (c *Client) GetTenant(ctx context.Context, name string) (*v1.Tenant, error) {
	var t v1.Tenant
	if _, err := c.Get(ctx, Ref{Kind: v1.KindTenant, Name: name}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// List lists every object of a kind the caller may see, page by page,
// all pages of one store revision (a list that changes meanwhile is read
// again from the start, a few times); for Workloads, tenant narrows the
// list to one tenant ("" for all visible).
func (c *Client) List(ctx context.Context, kind, tenant string) (wire.List, error) {
	var err error
	for range 5 {
		var all wire.List
		cont := ""
		for {
			var l wire.List
			if l, err = c.ListPage(ctx, kind, tenant, 0, cont); err != nil {
				break
			}
			all.Items = append(all.Items, l.Items...)
			all.Revision = l.Revision
			if cont = l.Continue; cont == "" {
				if all.Items == nil {
					all.Items = []wire.Item{}
				}
				return all, nil
			}
		}
		if !errors.Is(err, ErrExpired) {
			return wire.List{}, err
		}
	}
	return wire.List{}, err
}

// ListPage returns one page of a list: at most limit objects (0 for the
// server's default of 500) after the page cont names ("" for the first);
// the answer's Continue names the next page.
func (c *Client) ListPage(ctx context.Context, kind, tenant string, limit int, cont string) (wire.List, error) {
	p, err := Ref{Kind: kind, Tenant: tenant}.path()
	if err != nil {
		return wire.List{}, err
	}
	var l wire.List
	_, err = c.do(ctx, http.MethodGet, p, pageQuery(limit, cont), nil, &l)
	return l, err
}

// ListWorkloads lists workloads (of tenant, or every visible one).
func (c *Client) ListWorkloads(ctx context.Context, tenant string) ([]v1.Workload, error) {
	l, err := c.List(ctx, v1.KindWorkload, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]v1.Workload, len(l.Items))
	for i, it := range l.Items {
		if err := json.Unmarshal(it.Object, &out[i]); err != nil {
			return nil, fmt.Errorf("decode workload: %w", err)
		}
	}
	return out, nil
}

// Delete removes one object.
func (c *Client) Delete(ctx context.Context, ref Ref) (wire.DeleteResult, error) {
	if ref.Name == "" {
		return wire.DeleteResult{}, errors.New("delete: no name")
	}
	p, err := ref.path()
	if err != nil {
		return wire.DeleteResult{}, err
	}
	var res wire.DeleteResult
	_, err = c.do(ctx, http.MethodDelete, p, nil, nil, &res)
	return res, err
}

// Plan returns the scheduler's current plan of what the caller may see.
func (c *Client) Plan(ctx context.Context) (*scheduler.Result, error) {
	var r scheduler.Result
	if _, err := c.do(ctx, http.MethodGet, "/v1/plan", nil, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Events returns up to limit events after seq after.
func (c *Client) Events(ctx context.Context, after int64, limit int) (wire.Events, error) {
	q := url.Values{}
	q.Set("after", strconv.FormatInt(after, 10))
	q.Set("limit", strconv.Itoa(limit))
	var e wire.Events
	_, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, &e)
	return e, err
}

// TailEvents returns the latest n (at most 1000) events, oldest first.
func (c *Client) TailEvents(ctx context.Context, n int) (wire.Events, error) {
	q := url.Values{}
	q.Set("tail", "")
	q.Set("limit", strconv.Itoa(n))
	var e wire.Events
	_, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, &e)
	return e, err
}

// CreateToken makes a token with role for tenant ("" for operators).
func (c *Client) CreateToken(ctx context.Context, role, tenant, description string) (wire.TokenResponse, error) {
	body, err := json.Marshal(wire.TokenRequest{Role: role, Tenant: tenant, Description: description})
	if err != nil {
		return wire.TokenResponse{}, err
	}
	var t wire.TokenResponse
	_, err = c.do(ctx, http.MethodPost, "/v1/tokens", nil, body, &t)
	return t, err
}

// WhoAmI returns the principal of the client's token.
func (c *Client) WhoAmI(ctx context.Context) (wire.WhoAmI, error) {
	var w wire.WhoAmI
	_, err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &w)
	return w, err
}

// Ready reports whether the server answers /readyz with 200.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
	return err
}
