package tools

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// rpcResponse is a JSON-RPC response as the tests read it.
type rpcResponse struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// postRPC POSTs body to endpoint through client with the extra headers, as a streamable HTTP client would, and returns
// the response with its first JSON-RPC message (from a JSON body or the first event of an event stream).
func postRPC(t *testing.T, client *http.Client, endpoint, body string, headers map[string]string) (*http.Response, rpcResponse) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	msg := raw
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "text/event-stream" {
		msg = nil
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				msg = []byte(data)
				break
			}
		}
	}
	var rpc rpcResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(msg, &rpc); err != nil {
			t.Fatalf("%s: answer %q is not JSON-RPC: %v", body, raw, err)
		}
	} else if err := json.Unmarshal(raw, &rpc); err != nil {
		rpc.Error = &struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}{Message: string(raw)}
	}
	return resp, rpc
}

// callToolModern is a tools/call as a 2026-07-28 client sends it: no session, the protocol version in the
// MCP-Protocol-Version header and in _meta, the method and tool name repeated in Mcp-Method and Mcp-Name.
const callToolModern = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info","arguments":{},` +
	`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
	`"io.modelcontextprotocol/clientInfo":{"name":"modern-client","version":"1.2.0"},` +
	`"io.modelcontextprotocol/clientCapabilities":{}}}}`

var modernHeaders = map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "get-user-info"}

// initializeAt is an initialize request for protocol version v, as clients before 2026-07-28 start.
func initializeAt(v string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + v +
		`","capabilities":{},"clientInfo":{"name":"legacy-client","version":"1"}}}`
}

// TestDefaultServesEveryProtocolVersion checks that the service as configured by default (zero Options) answers every
// protocol version the go-sdk knows: a sessionless 2026-07-28 tools/call, and initialize at each earlier version. A
// stateful go-sdk handler refuses the former with 400 and -32022.
func TestDefaultServesEveryProtocolVersion(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{})
	client := &http.Client{Transport: gatewayFor(false, alice)}
	endpoint := srv.URL + Path

	resp, rpc := postRPC(t, client, endpoint, callToolModern, modernHeaders)
	if resp.StatusCode != http.StatusOK || rpc.Error != nil {
		t.Fatalf("2026-07-28 tools/call: got %s %+v, want 200 and a result", resp.Status, rpc.Error)
	}
	var res struct {
		IsError           bool           `json:"isError"`
		StructuredContent map[string]any `json:"structuredContent"`
	}
	if err := json.Unmarshal(rpc.Result, &res); err != nil || res.IsError || res.StructuredContent["userId"] != alice.UserID {
		t.Errorf("2026-07-28 tools/call: result %s, want alice's get-user-info", rpc.Result)
	}
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		t.Errorf("2026-07-28 tools/call: got Mcp-Session-Id %q, want none", sid)
	}

	for _, v := range mcp.SupportedProtocolVersions() {
		if v >= "2026-07-28" {
			continue // no initialize in that protocol
		}
		t.Run("initialize "+v, func(t *testing.T) {
			t.Parallel()
			resp, rpc := postRPC(t, client, endpoint, initializeAt(v), nil)
			if resp.StatusCode != http.StatusOK || rpc.Error != nil {
				t.Fatalf("got %s %+v, want 200 and a result", resp.Status, rpc.Error)
			}
			var res struct {
				ProtocolVersion string `json:"protocolVersion"`
			}
			if err := json.Unmarshal(rpc.Result, &res); err != nil || res.ProtocolVersion != v {
				t.Errorf("result %s: got protocolVersion %q, want %q", rpc.Result, res.ProtocolVersion, v)
			}
		})
	}
}

// TestStatefulKeepsSessions checks the opt-in: with Stateful, initialize opens a session, and a 2026-07-28 request,
// which the go-sdk serves only without sessions, is refused with -32022.
func TestStatefulKeepsSessions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{Stateful: true})
	client := &http.Client{Transport: gatewayFor(false, alice)}
	endpoint := srv.URL + Path

	resp, rpc := postRPC(t, client, endpoint, initializeAt("2025-06-18"), nil)
	if resp.StatusCode != http.StatusOK || rpc.Error != nil || resp.Header.Get("Mcp-Session-Id") == "" {
		t.Errorf("initialize: got %s, session %q, error %+v; want 200 with a session id", resp.Status, resp.Header.Get("Mcp-Session-Id"), rpc.Error)
	}
	resp, rpc = postRPC(t, client, endpoint, callToolModern, modernHeaders)
	if resp.StatusCode != http.StatusBadRequest || rpc.Error == nil || rpc.Error.Code != -32022 {
		t.Errorf("2026-07-28 tools/call: got %s %+v, want 400 and -32022", resp.Status, rpc.Error)
	}
}
