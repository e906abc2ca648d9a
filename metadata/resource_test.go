package metadata

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name.golden, or rewrites the file under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got\n%s\nwant\n%s", path, got, want)
	}
}

// do sends one request to srv and returns the response with its body read.
func do(t *testing.T, srv *httptest.Server, method string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/.well-known/doc", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestProtectedResourceGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  ProtectedResource
	}{
		{
			name: "prm_full",
			doc: ProtectedResource{
				Resource:               "https://mcp.example.com/mcp",
				AuthorizationServers:   []string{"https://example.authkit.app"},
				ScopesSupported:        []string{"mcp:read", "mcp:write"},
				BearerMethodsSupported: []string{"header"},
				ResourceName:           "Example MCP server",
				ResourceDocumentation:  "https://example.com/docs?a=1&b=<2>",
			},
		},
		{
			name: "prm_minimal",
			doc: ProtectedResource{
				Resource:             "https://mcp.example.com/mcp",
				AuthorizationServers: []string{"https://example.authkit.app"},
			},
		},
		{
			// A nil slice is an array on the wire, never null.
			name: "prm_no_servers",
			doc:  ProtectedResource{Resource: "http://localhost:8080"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(ProtectedResourceHandler(tt.doc))
			t.Cleanup(srv.Close)
			resp, body := do(t, srv, http.MethodGet, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status: got %d, want 200", resp.StatusCode)
			}
			golden(t, tt.name, body)

			var back ProtectedResource
			if err := json.Unmarshal(body, &back); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if back.Resource != tt.doc.Resource {
				t.Errorf("resource: got %q, want %q", back.Resource, tt.doc.Resource)
			}
		})
	}
}

func TestProtectedResourceHandlerMethods(t *testing.T) {
	t.Parallel()
	doc := ProtectedResource{
		Resource:               "https://mcp.example.com/mcp",
		AuthorizationServers:   []string{"https://example.authkit.app"},
		BearerMethodsSupported: []string{"header"},
	}
	srv := httptest.NewServer(ProtectedResourceHandler(doc))
	t.Cleanup(srv.Close)
	_, want := do(t, srv, http.MethodGet, nil)
	testMethods(t, srv, want, "public, max-age=300")
}

// errorBody is the JSON error every handler of the package answers with.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// methodCase is one request of testMethods.
type methodCase struct {
	name       string
	method     string
	header     http.Header
	wantStatus int
	wantBody   []byte
	wantHeader map[string]string // "" means absent
}

// testMethods checks the method and CORS handling shared by every handler of the package.
func testMethods(t *testing.T, srv *httptest.Server, wantBody []byte, wantCache string) {
	t.Helper()
	tests := []methodCase{
		{
			name:       "GET",
			method:     http.MethodGet,
			wantStatus: http.StatusOK,
			wantBody:   wantBody,
			wantHeader: map[string]string{
				"Content-Type":                "application/json",
				"Content-Length":              strconv.Itoa(len(wantBody)),
				"Cache-Control":               wantCache,
				"Access-Control-Allow-Origin": "*",
				"X-Content-Type-Options":      "nosniff",
			},
		},
		{
			name:       "HEAD",
			method:     http.MethodHead,
			wantStatus: http.StatusOK,
			wantBody:   []byte{},
			wantHeader: map[string]string{
				"Content-Type":                "application/json",
				"Content-Length":              strconv.Itoa(len(wantBody)),
				"Access-Control-Allow-Origin": "*",
			},
		},
		{
			name:   "preflight echoes requested headers",
			method: http.MethodOptions,
			header: http.Header{
				"Origin":                         {"https://inspector.example"},
				"Access-Control-Request-Method":  {"GET"},
				"Access-Control-Request-Headers": {"mcp-protocol-version,traceparent"},
			},
			wantStatus: http.StatusNoContent,
			wantBody:   []byte{},
			wantHeader: map[string]string{
				"Access-Control-Allow-Origin":  "*",
				"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
				"Access-Control-Allow-Headers": "mcp-protocol-version,traceparent",
				"Vary":                         "Access-Control-Request-Headers",
				"Allow":                        "GET, HEAD, OPTIONS",
				"Content-Type":                 "",
			},
		},
		{
			name:       "OPTIONS without preflight headers",
			method:     http.MethodOptions,
			wantStatus: http.StatusNoContent,
			wantBody:   []byte{},
			wantHeader: map[string]string{
				"Access-Control-Allow-Origin":  "*",
				"Access-Control-Allow-Headers": "",
				"Allow":                        "GET, HEAD, OPTIONS",
			},
		},
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		tests = append(tests, methodCase{
			name:       method,
			method:     method,
			wantStatus: http.StatusMethodNotAllowed,
			wantBody:   []byte(bodyMethod),
			wantHeader: map[string]string{
				"Allow":                       "GET, HEAD, OPTIONS",
				"Content-Type":                "application/json",
				"Cache-Control":               "no-store",
				"Access-Control-Allow-Origin": "*",
			},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, srv, tt.method, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body: got %q, want %q", body, tt.wantBody)
			}
			for k, want := range tt.wantHeader {
				if got := strings.Join(resp.Header.Values(k), ", "); got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(NotFound))
	t.Cleanup(srv.Close)
	resp, body := do(t, srv, http.MethodGet, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status: got %d, want 404", resp.StatusCode)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if e.Error != "not_found" || e.ErrorDescription == "" {
		t.Errorf("body: got %q, want error not_found with a description", body)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
}
