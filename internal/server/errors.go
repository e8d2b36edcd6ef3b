package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// httpError is an error with two audiences, like tailscale's
// tsweb.HTTPError: Status, Code, Msg and Details are what the client sees;
// Err is what the log gets and is never sent.
type httpError struct {
	Status  int
	Code    string
	Msg     string
	Details []string
	Err     error
	// RetryAfter, when set, is sent as Retry-After (whole seconds, at
	// least 1): when a 429 or 503 is worth trying again.
	RetryAfter time.Duration
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Msg)
}

func (e *httpError) Unwrap() error { return e.Err }

// storeRetryAfter is the Retry-After of an answer the store could not
// give: about the time a lost etcd member takes to come back or be
// replaced by a new leader.
const storeRetryAfter = 2 * time.Second

func newError(status int, code, format string, args ...any) *httpError {
	return &httpError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *httpError {
	return newError(http.StatusBadRequest, wire.CodeInvalid, format, args...)
}

// notFound is the one answer for an object that is missing and for one the
// caller may not know about: same status, code and message.
func notFound(kind, tenant, name string) *httpError {
	switch {
	case kind == v1.KindTenant:
		return newError(http.StatusNotFound, wire.CodeNotFound, "tenant %q not found", name)
	case tenant != "" && name == "":
		return newError(http.StatusNotFound, wire.CodeNotFound, "tenant %q not found", tenant)
	case tenant != "":
		return newError(http.StatusNotFound, wire.CodeNotFound, "%s %s/%s not found", lower(kind), tenant, name)
	}
	return newError(http.StatusNotFound, wire.CodeNotFound, "%s %q not found", lower(kind), name)
}

// subject is the object a request is about, for error messages: field
// errors about it leave out its kind and name (the path has them), and
// lines are given only for YAML bodies, which a person wrote (a JSON body
// is usually a client's re-encoding, whose lines mean nothing).
type subject struct {
	kind, name string
	lines      bool
}

// text formats one field error for the client.
func (s subject) text(e error) string {
	fe, ok := errors.AsType[*v1.FieldError](e)
	if !ok {
		return e.Error()
	}
	c := *fe
	c.File, c.Doc = "", 0
	if !s.lines {
		c.Line = 0
	}
	if c.Kind == s.kind && c.Name == s.name {
		c.Kind, c.Name = "", ""
	}
	return c.Error()
}

// manifestError turns api/v1 field errors into one client error listing
// each problem with its field and fix.
func manifestError(status int, err error, subj subject) *httpError {
	var details []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			details = append(details, subj.text(e))
		}
	} else {
		details = []string{subj.text(err)}
	}
	msg := details[0]
	if n := len(details) - 1; n > 0 {
		msg = fmt.Sprintf("%s (and %d more problem(s), see details)", msg, n)
	}
	if len(details) == 1 {
		details = nil
	}
	return &httpError{Status: status, Code: wire.CodeInvalid, Msg: msg, Details: details, Err: err}
}

// asHTTPError classifies any error a handler returns. Errors that are not
// already an *httpError become a generic 500 (or 503), with no detail.
func asHTTPError(err error) *httpError {
	if he, ok := errors.AsType[*httpError](err); ok {
		return he
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: wire.CodeTooLarge,
			Msg: fmt.Sprintf("request body exceeds %d bytes; send one object per request and keep manifests small", mbe.Limit), Err: err}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &httpError{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable,
			Msg: "the store does not answer; retry shortly", Err: err, RetryAfter: storeRetryAfter}
	case errors.Is(err, store.ErrClosed):
		return &httpError{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable,
			Msg: "the server is not available; retry shortly", Err: err, RetryAfter: storeRetryAfter}
	case errors.Is(err, store.ErrTooLarge):
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: wire.CodeTooLarge,
			Msg: "the object is too large to store; make it smaller", Err: err}
	}
	return &httpError{Status: http.StatusInternalServerError, Code: wire.CodeInternal,
		Msg: "internal error; the server log has the details under this request ID", Err: err}
}

// writeError sends err to the client and logs it. Client mistakes (4xx)
// are logged at debug level, server failures at error level with the
// cause the client does not see.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	he := asHTTPError(err)
	id := requestID(r.Context())
	level := slog.LevelDebug
	if he.Status >= 500 {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "request failed", "id", id, "method", r.Method, "path", r.URL.Path,
		"status", he.Status, "code", he.Code, "msg", he.Msg, "err", he.Err)
	body := wire.Error{Code: he.Code, Message: he.Msg, Details: he.Details, RequestID: id}
	if he.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rung"`)
	}
	if he.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(1, (he.RetryAfter+time.Second-1)/time.Second))))
	}
	writeJSON(w, he.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	jsonHeaders(w)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // JSON with nosniff is never read as HTML
	_ = enc.Encode(v)        // the client went away; nothing to do
}

// jsonHeaders are the headers of every JSON answer.
func jsonHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
}
