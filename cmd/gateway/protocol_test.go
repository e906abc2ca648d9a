package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/tools"
)

// TestProtocolVersionsThroughGateway sends, through the real gateway to the tool service with its default options,
// what clients send by default: a 2026-07-28 tools/call without a session (the protocol version in the
// MCP-Protocol-Version header and in _meta, the method and tool in Mcp-Method and Mcp-Name), as mcp-go 1.2 and the
// go-sdk 1.8 client do, and a 2025-06-18 initialize, as older clients do. Both must succeed.
func TestProtocolVersionsThroughGateway(t *testing.T) {
	is := newIssuer(t)
	up := httptest.NewServer(tools.Handler(tools.Options{IdentitySecret: []byte(secret)}))
	t.Cleanup(up.Close)
	base, _ := startGateway(t, map[string]string{
		"GATEWAY_ISSUER_URL":      is.URL,
		"GATEWAY_UPSTREAM_URL":    up.URL + "/mcp",
		"GATEWAY_IDENTITY_SECRET": secret,
	})
	token := is.token(t, "user_alice", map[string]any{"email": "alice@example.com"})

	for _, tc := range []struct {
		name    string
		body    string
		headers map[string]string
		want    string // the result, as fmt would print the decoded members it is checked by
	}{
		{
			name: "2026-07-28 tools/call without a session",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info","arguments":{},` +
				`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
				`"io.modelcontextprotocol/clientInfo":{"name":"modern-client","version":"1.2.0"},` +
				`"io.modelcontextprotocol/clientCapabilities":{}}}}`,
			headers: map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "get-user-info"},
			want:    `{"isError":false,"userId":"user_alice"}`,
		},
		{
			name: "2025-06-18 initialize",
			body: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},` +
				`"clientInfo":{"name":"legacy-client","version":"1"}}}`,
			want: `{"protocolVersion":"2025-06-18","serverName":"mcp-gateway-tools"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/mcp", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				msg, _ := readRPC(resp)
				t.Fatalf("got %s %s, want 200", resp.Status, msg)
			}
			msg, err := readRPC(resp)
			if err != nil {
				t.Fatal(err)
			}
			var rpc struct {
				Result *struct {
					IsError           *bool             `json:"isError"`
					StructuredContent map[string]string `json:"structuredContent"`
					ProtocolVersion   string            `json:"protocolVersion"`
					ServerInfo        struct{ Name string }
				} `json:"result"`
				Error json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(msg, &rpc); err != nil || rpc.Result == nil {
				t.Fatalf("answer %s: want a JSON-RPC result (%v)", msg, err)
			}
			got := map[string]any{}
			if r := rpc.Result; r.ProtocolVersion != "" {
				got["protocolVersion"], got["serverName"] = r.ProtocolVersion, r.ServerInfo.Name
			} else {
				got["isError"], got["userId"] = r.IsError != nil && *r.IsError, r.StructuredContent["userId"]
			}
			if b, _ := json.Marshal(got); string(b) != tc.want {
				t.Errorf("result %s: got %s, want %s", msg, b, tc.want)
			}
		})
	}
}
