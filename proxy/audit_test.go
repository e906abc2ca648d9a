package proxy

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// stuckWriter is an audit destination that takes nothing until released.
type stuckWriter struct{ release chan struct{} }

func (w stuckWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

// TestAuditFloodDoesNotBlock: a destination that takes nothing never holds a request: past the queue, events are
// dropped and counted.
func TestAuditFloodDoesNotBlock(t *testing.T) {
	t.Parallel()
	w := stuckWriter{release: make(chan struct{})}
	var dropped atomic.Int64
	a := NewAuditLog(w, AuditOptions{Queue: 4, Dropped: func() { dropped.Add(1) }})
	ex := listExchange(t, call("1", "get-user-info"), "")
	st := &reqState{reqID: "r", principal: &token.Principal{Subject: "user_1"}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			a.event(st, ex, &ex.msgs[0], 200, time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sending audit events blocked")
	}
	if n := dropped.Load(); n < 850 { // the writer holds one batch (about a hundred events) and the queue four
		t.Errorf("dropped %d of 1000 with a queue of 4", n)
	}
	close(w.release)
	a.Close()
}

// TestAuditFloodBoundedInBytes: the queue is bounded in bytes too, not only in events: a message names what the client
// chose, as long as the body allows (4 MiB by default), and 8192 such events waiting for a stuck destination would
// hold 32 GiB. Past the bound, events are dropped and counted.
func TestAuditFloodBoundedInBytes(t *testing.T) {
	t.Parallel()
	w := stuckWriter{release: make(chan struct{})}
	var dropped atomic.Int64
	a := NewAuditLog(w, AuditOptions{Dropped: func() { dropped.Add(1) }})
	ex := listExchange(t, call("1", strings.Repeat("x", 1<<20)), "")
	st := &reqState{reqID: "r", principal: &token.Principal{Subject: "user_1"}}
	const n = 200
	for range n {
		a.event(st, ex, &ex.msgs[0], 200, time.Millisecond)
	}
	if held := n - dropped.Load(); held > auditQueueBytes>>20+2 { // the queue's bytes, and the line being written
		t.Errorf("%d events of 1 MiB held, %d dropped", held, dropped.Load())
	}
	close(w.release)
	a.Close()
}

// TestOpenAudit: off, stderr (or the writer given), or a file appended to.
func TestOpenAudit(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(file, []byte("before\n"), 0o600)
	for _, dest := range []string{"off", "stderr", file} {
		a, closeAudit, err := openAudit(&config.Config{AuditLog: dest}, io.Discard, AuditOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if (a == nil) != (dest == "off") {
			t.Errorf("%s: audit log %v", dest, a)
		}
		if a != nil {
			ex := listExchange(t, call("1", "get-user-info"), "")
			ex.decide(&ex.msgs[0])
			a.event(&reqState{reqID: "r", principal: &token.Principal{Subject: "user_1"}}, ex, &ex.msgs[0], 200, time.Millisecond)
		}
		closeAudit()
	}
	b, _ := os.ReadFile(file)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 2 || lines[0] != "before" ||
		!strings.Contains(lines[1], `"gen_ai.tool.name":"get-user-info","enduser.id":"user_1","decision":"allow","security_rule.name":"everyone-reads-themselves"`) {
		t.Errorf("file: got %q", b)
	}
	if _, _, err := openAudit(&config.Config{AuditLog: filepath.Join(file, "not-a-dir", "x")}, nil, AuditOptions{}); err == nil || !strings.Contains(err.Error(), "GATEWAY_AUDIT_LOG") {
		t.Errorf("unwritable path: got %v", err)
	}
}

// TestAuditFieldsDocumented: every member an audit event can have is in docs/policy.md's table.
func TestAuditFieldsDocumented(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, audit, _ := strings.Cut(string(md), "\n## Audit\n")
	a := &AuditLog{issuer: "https://issuer.example", hash: true, now: time.Now}
	a.lines.New = func() any { b := make([]byte, 0, 512); return &b }
	var keys []string
	for _, body := range []string{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, call("1", "billing-x"),
		`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"u"}}`} {
		ex := listExchange(t, body, "2025-06-18")
		m := &ex.msgs[0]
		ex.decide(m)
		m.listDone, m.code = m.list != nil, codeInvalidParams
		if m.list != nil {
			m.code = 0
		}
		st := &reqState{reqID: "r", upstreamSession: "s", principal: &token.Principal{Subject: "u", Identity: identity.Identity{ClientID: "c", OrgID: "o"}}}
		var ev map[string]any
		if err := json.Unmarshal(*a.line(st, ex, m, 200, time.Millisecond), &ev); err != nil {
			t.Fatal(err)
		}
		for k := range ev {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if !strings.Contains(audit, "`"+k+"`") {
			t.Errorf("docs/policy.md's Audit section does not name %s", k)
		}
	}
}
