package tools

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

const testAPIKey = "sk_test_secret_key"

// fakeWorkOS is a WorkOS API that records the requests it receives and answers with respond.
type fakeWorkOS struct {
	respond func(w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []*http.Request
}

func (f *fakeWorkOS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Clone(r.Context()))
	f.mu.Unlock()
	f.respond(w, r)
}

func (f *fakeWorkOS) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs
}

func respondJSON(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
}

const workosUser = `{"object":"user","id":"user_01H5","email":"alice@example.com","email_verified":true,` +
	`"first_name":"Alice","last_name":"Doe","profile_picture_url":null,"metadata":{"team":"blue"},` +
	`"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-02T00:00:00.000Z"}`

func TestGetWorkOSUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		userID  string
		apiKey  string
		prefix  string // path under the fake server that WorkOSBaseURL points at
		respond func(http.ResponseWriter, *http.Request)
		timeout time.Duration
		closed  bool // the WorkOS server is closed before the call

		wantPath  string // escaped path the fake received; "" means no request must reach it
		wantUser  string // JSON of the user on success
		wantError string // the tool error's text, or its start when it ends in "…"
	}{
		{
			name: "user", userID: "user_01H5", apiKey: testAPIKey, respond: respondJSON(200, workosUser),
			wantPath: "/user_management/users/user_01H5", wantUser: workosUser,
		},
		{
			name: "user id is path-escaped", userID: "a/../b?c=d#e%f g", apiKey: testAPIKey, respond: respondJSON(200, `{"id":"x"}`),
			wantPath: "/user_management/users/a%2F..%2Fb%3Fc=d%23e%25f%20g", wantUser: `{"id":"x"}`,
		},
		{
			name: "base URL with a path and a trailing slash", userID: "user_1", apiKey: testAPIKey, prefix: "/api/",
			respond:  respondJSON(200, `{"id":"user_1"}`),
			wantPath: "/api/user_management/users/user_1", wantUser: `{"id":"user_1"}`,
		},
		{
			name: "dot segment user id", userID: "..", apiKey: testAPIKey, respond: respondJSON(200, `{}`),
			wantError: "Failed to fetch user from WorkOS: invalid user id",
		},
		{
			name: "not found", userID: "user_1", apiKey: testAPIKey,
			respond:  respondJSON(404, `{"code":"entity_not_found","message":"User not found"}`),
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: 404 Not Found",
		},
		{
			name: "key refused", userID: "user_1", apiKey: testAPIKey, respond: respondJSON(401, `{"message":"Unauthorized"}`),
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: 401 Unauthorized",
		},
		{
			name: "server error", userID: "user_1", apiKey: testAPIKey, respond: respondJSON(500, ``),
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: 500 Internal Server Error",
		},
		{
			name: "status without text", userID: "user_1", apiKey: testAPIKey, respond: respondJSON(599, ``),
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: 599",
		},
		{
			name: "not an object", userID: "user_1", apiKey: testAPIKey, respond: respondJSON(200, `["user_1"]`),
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: the response is not a JSON object",
		},
		{
			name: "null", userID: "user_1", apiKey: testAPIKey, respond: respondJSON(200, `null`),
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: the response is not a JSON object",
		},
		{
			name: "too large", userID: "user_1", apiKey: testAPIKey,
			respond:  respondJSON(200, `{"pad":"`+strings.Repeat("x", maxWorkOSResponse)+`"}`),
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: the response is too large",
		},
		{
			name: "no API key", userID: "user_1", respond: respondJSON(200, workosUser),
			wantError: errNoAPIKey.Error(),
		},
		{
			name: "WorkOS unreachable", userID: "user_1", apiKey: testAPIKey, respond: respondJSON(200, workosUser), closed: true,
			wantError: "Failed to fetch user from WorkOS: the WorkOS API could not be reached",
		},
		{
			name: "WorkOS too slow", userID: "user_1", apiKey: testAPIKey, timeout: 50 * time.Millisecond,
			respond:  func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			wantPath: "/user_management/users/user_1", wantError: "Failed to fetch user from WorkOS: the request timed out",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeWorkOS{respond: tt.respond}
			workosSrv := httptest.NewServer(fake)
			t.Cleanup(workosSrv.Close)
			if tt.closed {
				workosSrv.Close()
			}
			srv := startServer(t, Options{
				WorkOSBaseURL: workosSrv.URL + tt.prefix,
				WorkOSAPIKey:  tt.apiKey,
				WorkOSTimeout: tt.timeout,
			})
			cs := connect(t, srv, &gatewayTransport{id: identity.Identity{UserID: tt.userID}})

			if tt.wantError != "" {
				got := callToolError(t, cs, "get-workos-user")
				if got != tt.wantError {
					t.Errorf("tool error = %q, want %q", got, tt.wantError)
				}
				if tt.apiKey != "" && strings.Contains(got, tt.apiKey) {
					t.Errorf("tool error %q leaks the API key", got)
				}
			} else {
				got := callTool(t, cs, "get-workos-user")
				if want := roundTrip(t, jsonRaw(tt.wantUser)); !reflect.DeepEqual(got, want) {
					t.Errorf("get-workos-user = %v, want %s", got, tt.wantUser)
				}
			}

			reqs := fake.requests()
			if tt.wantPath == "" {
				if len(reqs) != 0 {
					t.Fatalf("WorkOS got %d requests, want none", len(reqs))
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("WorkOS got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodGet {
				t.Errorf("method = %s, want GET", r.Method)
			}
			if got := r.URL.EscapedPath(); got != tt.wantPath {
				t.Errorf("path = %s, want %s", got, tt.wantPath)
			}
			if r.URL.RawQuery != "" {
				t.Errorf("query = %q, want none", r.URL.RawQuery)
			}
			if got, want := r.Header.Get("Authorization"), "Bearer "+tt.apiKey; got != want {
				t.Errorf("Authorization = %q, want %q", got, want)
			}
			for name := range r.Header {
				if identity.IsIdentityHeader(name) {
					t.Errorf("identity header %s forwarded to WorkOS", name)
				}
			}
		})
	}
}

// jsonRaw lets roundTrip decode a JSON literal.
type jsonRaw string

func (j jsonRaw) MarshalJSON() ([]byte, error) { return []byte(j), nil }
