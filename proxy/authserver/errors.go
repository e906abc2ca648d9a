package authserver

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"
)

// oauthError is a refusal, and the one place that says what a client or a person sees of it: an OAuth error (RFC 6749
// §5.2) with a fixed, client-safe description; a page for a person in a browser (Title set); or an error sent to the
// client at its redirect URI (RedirectTo set). Attrs, the cause, go to the access line only.
type oauthError struct {
	Status      int
	Code        string // the OAuth error code; not shown on a page
	Description string // fixed and client-safe: the error_description, or the text of a page
	// Title makes the error a page: its heading. Empty for an error meant for a client.
	Title string
	// RedirectTo, when set, sends the error to the client instead of a page: its redirect URI with error,
	// error_description, state and iss (see clientRedirectURL).
	RedirectTo string
	RetryAfter time.Duration // > 0: sent as Retry-After
	Attrs      []slog.Attr   // the cause, for the access line only: fixed texts, never a token, code or secret
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

// oauthErr is an OAuth error for a client.
func oauthErr(status int, code, description string, attrs ...slog.Attr) *oauthError {
	return &oauthError{Status: status, Code: code, Description: description, Attrs: attrs}
}

func errInvalidRequest(desc string) *oauthError {
	return oauthErr(http.StatusBadRequest, "invalid_request", desc)
}

// pageError is an error shown to a person on a page: an error that must not be sent to a redirect URI the browser has
// not allowed, or one that concerns the browser rather than the client.
func pageError(status int, title, text string, attrs ...slog.Attr) *oauthError {
	return &oauthError{Status: status, Title: title, Description: text, Attrs: attrs}
}

// asError returns err as an oauthError; any other error is an internal one, whose text goes to the access line only.
func asError(err error) *oauthError {
	var e *oauthError
	if errors.As(err, &e) {
		return e
	}
	return oauthErr(http.StatusInternalServerError, "server_error", "the gateway could not answer this request", slog.String("err", err.Error()))
}

// api serves an endpoint for clients (/register, /token): cross-origin, POST only, and an error of h answered as an
// OAuth JSON error.
func (s *Server) api(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !postEndpoint(w, r) {
			return
		}
		if err := h(w, r); err != nil {
			s.writeJSON(w, r, asError(err))
		}
	})
}

// browser serves an endpoint for a person in a browser (/authorize, /callback): an error of h is answered with a page,
// or sent to the client when it says so.
func (s *Server) browser(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writePage(w, r, asError(err))
		}
	})
}

// writeJSON answers e as an OAuth JSON error (RFC 6749 §5.2) and notes the refusal.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, e *oauthError) {
	s.note(r, true, slices.Concat(e.Attrs, []slog.Attr{slog.String("error", e.Code), slog.String("error_description", e.Description)})...)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
	}
	writeJSONError(w, e.Status, e.Code, e.Description)
}

// writePage answers e with a page for the person in the browser or, with RedirectTo, by sending the browser to the
// client with the error; and notes the refusal.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, e *oauthError) {
	if e.RedirectTo != "" {
		s.note(r, true, slices.Concat([]slog.Attr{slog.String("error", e.Code), slog.String("error_description", e.Description),
			slog.String("answered_at", "redirect_uri")}, e.Attrs)...)
		http.Redirect(w, r, e.RedirectTo, http.StatusFound)
		return
	}
	title := e.Title
	if title == "" { // an OAuth error for a client that is shown to the person instead
		title = "Invalid request"
	}
	s.note(r, true, slices.Concat([]slog.Attr{slog.Int("status", e.Status), slog.String("page", title)}, e.Attrs)...)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e.RetryAfter))
	}
	pageHeaders(w.Header())
	w.WriteHeader(e.Status)
	messageTemplate.Execute(w, struct{ Title, Text string }{title, e.Description})
}

// errorBody is the JSON body of an OAuth error.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// writeJSONError writes a JSON error body with status.
func writeJSONError(w http.ResponseWriter, status int, code, description string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := json.Marshal(errorBody{Error: code, ErrorDescription: description})
	w.Write(append(b, '\n'))
}
