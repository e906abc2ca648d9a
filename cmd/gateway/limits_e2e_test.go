package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-gateway/gateway/tools"
)

// TestToolLimitWithRealClient: a go-sdk client, with its defaults, calls a tool whose rule allows two calls a minute
// per caller, through the real gateway and tool service: the third call fails with the gateway's 429 and the session
// keeps working; another tool, and another caller, are not affected.
func TestToolLimitWithRealClient(t *testing.T) {
	is := newIssuer(t)
	up := httptest.NewServer(tools.Handler(tools.Options{IdentitySecret: []byte(secret)}))
	t.Cleanup(up.Close)
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte(`rules:
  - name: permissions-twice-a-minute
    tools: ["get-user-permissions"]
    limit: {rate: 2/m}
  - name: info
    tools: ["get-user-info"]
`), 0o600)
	base, _ := startGateway(t, map[string]string{"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp",
		"GATEWAY_IDENTITY_SECRET": secret, "GATEWAY_POLICY_FILE": file, "GATEWAY_AUDIT_LOG": "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := connect(t, ctx, base+"/mcp", is.token(t, "user_alice", nil), nil)
	for i := range 2 {
		if _, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-permissions"}); err != nil {
			t.Fatalf("call %d within the limit: %v", i+1, err)
		}
	}
	// go-sdk v1.8.0's transport reports a 429 by its status text and does not read the body; clients that read it
	// get the JSON-RPC error (proxy's TestPolicyToolLimit checks the body).
	_, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-permissions"})
	if err == nil || !strings.Contains(err.Error(), "Too Many Requests") && !strings.Contains(err.Error(), "Rate limit exceeded") {
		t.Fatalf("third call: got %v, want the gateway's 429", err)
	}
	if _, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-info"}); err != nil {
		t.Errorf("another tool after the refusal: %v", err)
	}
	bob := connect(t, ctx, base+"/mcp", is.token(t, "user_bob", nil), nil)
	if _, err := bob.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-permissions"}); err != nil {
		t.Errorf("another caller: %v", err)
	}
}
