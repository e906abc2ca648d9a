package authz

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
	req := &Request{ID: "r", Subject: "user_1"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			a.event(req, ex, &ex.msgs[0], 200, time.Millisecond)
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
	req := &Request{ID: "r", Subject: "user_1"}
	const n = 200
	for range n {
		a.event(req, ex, &ex.msgs[0], 200, time.Millisecond)
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
		a, closeAudit, err := OpenAuditLog(dest, io.Discard, AuditOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if (a == nil) != (dest == "off") {
			t.Errorf("%s: audit log %v", dest, a)
		}
		if a != nil {
			ex := listExchange(t, call("1", "get-user-info"), "")
			ex.decide(&ex.msgs[0])
			a.event(&Request{ID: "r", Subject: "user_1"}, ex, &ex.msgs[0], 200, time.Millisecond)
		}
		closeAudit()
	}
	b, _ := os.ReadFile(file)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 2 || lines[0] != "before" ||
		!strings.Contains(lines[1], `"gen_ai.tool.name":"get-user-info","enduser.id":"user_1","decision":"allow","security_rule.name":"everyone-reads-themselves"`) {
		t.Errorf("file: got %q", b)
	}
	var pathErr *fs.PathError
	if _, _, err := OpenAuditLog(filepath.Join(file, "not-a-dir", "x"), nil, AuditOptions{}); !errors.As(err, &pathErr) {
		t.Errorf("unwritable path: got %v", err)
	}
}

// TestAuditReopen: after a rotation renamed the file, Reopen makes the events that follow go to a new file by the
// name; those written before stay in the renamed one. Reopen of an audit log on stderr does nothing.
func TestAuditReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file, rotated := filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit.log.1")
	a, closeAudit, err := OpenAuditLog(file, nil, AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ex := listExchange(t, call("1", "get-user-info"), "")
	ex.decide(&ex.msgs[0])
	write := func(id string) {
		a.event(&Request{ID: id, Subject: "user_1"}, ex, &ex.msgs[0], 200, time.Millisecond)
	}
	write("before")
	waitForFile(t, file, `"before"`)
	if err := os.Rename(file, rotated); err != nil {
		t.Fatal(err)
	}
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	write("after")
	closeAudit()
	old, _ := os.ReadFile(rotated)
	cur, _ := os.ReadFile(file)
	if strings.Count(string(old), "\n") != 1 || !strings.Contains(string(old), `"before"`) ||
		strings.Count(string(cur), "\n") != 1 || !strings.Contains(string(cur), `"after"`) {
		t.Errorf("rotated file %q, new file %q: want one event each", old, cur)
	}
	s, closeS, _ := OpenAuditLog("stderr", io.Discard, AuditOptions{})
	defer closeS()
	if err := s.Reopen(); err != nil {
		t.Errorf("stderr: %v", err)
	}
	if err := (*AuditLog)(nil).Reopen(); err != nil {
		t.Errorf("off: %v", err)
	}
}

// waitForFile waits until the file at path holds want.
func waitForFile(t *testing.T, path, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), want) {
			return
		}
	}
	t.Fatalf("%s never held %s", path, want)
}

// TestAuditFieldsDocumented: every member an audit event can have is in docs/policy.md's table.
func TestAuditFieldsDocumented(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../../docs/policy.md")
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
		req := &Request{ID: "r", Session: "s", Subject: "u", ClientID: "c", OrgID: "o"}
		var ev map[string]any
		if err := json.Unmarshal(*a.line(req, ex, m, 200, time.Millisecond), &ev); err != nil {
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

// BenchmarkAuditWrite compares the two ways to write an audit event to a file: through the queue (what a request
// pays; the writer batches) and a write per event under the request.
func BenchmarkAuditWrite(b *testing.B) {
	ex := listExchange(b, call("1", "get-user-info"), "2025-06-18")
	ex.decide(&ex.msgs[0])
	req := &Request{ID: "abcdefghij-12345", Subject: "user_1", ClientID: "c", OrgID: "org_1", Start: time.Now()}
	open := func(b *testing.B) *os.File {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "audit.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		return f
	}
	b.Run("queued", func(b *testing.B) {
		var dropped atomic.Int64
		a := NewAuditLog(open(b), AuditOptions{Issuer: "https://issuer.example", Dropped: func() { dropped.Add(1) }})
		b.ReportAllocs()
		for b.Loop() {
			a.event(req, ex, &ex.msgs[0], 200, time.Millisecond)
		}
		a.Close()
		b.ReportMetric(float64(dropped.Load())/float64(b.N), "dropped/op")
	})
	b.Run("one write per event", func(b *testing.B) {
		f := open(b)
		a := &AuditLog{issuer: "https://issuer.example", now: time.Now}
		a.lines.New = func() any { b := make([]byte, 0, 512); return &b }
		b.ReportAllocs()
		for b.Loop() {
			l := a.line(req, ex, &ex.msgs[0], 200, time.Millisecond)
			f.Write(*l)
			a.lines.Put(l)
		}
	})
}
