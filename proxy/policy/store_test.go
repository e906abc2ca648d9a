package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	storeV1 = "rules:\n  - name: v1\n    tools: ['*']\n"
	storeV2 = "rules:\n  - name: v2\n    tools: ['*']\n"
	broken  = "rules:\n  - name: v3\n    tools: ['*']\n    when: 'claims.x ==='\n"
)

// ruleOf returns the name of the first rule of s's current policy.
func ruleOf(s *Store) string { return s.Policy().Rules()[0] }

// writeFile replaces the file at path with content at once (written aside, then renamed), so that a watcher never
// reads it half written.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStoreFailsClosed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := NewStore(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NewStore(missing file): got %v, want an error wrapping os.ErrNotExist", err)
	}
	path := filepath.Join(dir, "broken.yaml")
	writeFile(t, path, broken)
	var pe *Error
	if _, err := NewStore(path); !errors.As(err, &pe) || pe.Rule != "v3" || pe.Line != 4 {
		t.Errorf("NewStore(broken file): got %v, want the *policy.Error of rule v3 at line 4", err)
	}
}

func TestStoreReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storeV1)
	s, err := NewStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleOf(s); got != "v1" {
		t.Fatalf("after NewStore: rule %s, want v1", got)
	}
	writeFile(t, path, storeV2)
	if err := s.Reload(); err != nil || ruleOf(s) != "v2" {
		t.Errorf("Reload of a good file: err %v, rule %s; want nil, v2", err, ruleOf(s))
	}
	writeFile(t, path, broken)
	var pe *Error
	if err := s.Reload(); !errors.As(err, &pe) || ruleOf(s) != "v2" {
		t.Errorf("Reload of a broken file: err %v, rule %s; want a *policy.Error, v2 kept", err, ruleOf(s))
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); !errors.Is(err, os.ErrNotExist) || ruleOf(s) != "v2" {
		t.Errorf("Reload of a removed file: err %v, rule %s; want os.ErrNotExist, v2 kept", err, ruleOf(s))
	}
}

// TestStoreWatch changes the file under a watching store, and checks that every change is reported once, touching
// it is not, and a broken or missing file keeps the policy.
func TestStoreWatch(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storeV1)
	s, err := NewStore(path)
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(ctx, time.Millisecond, func(err error) { reloads <- err }) }()
	defer func() { cancel(); <-done }()
	next := func(what string) error {
		t.Helper()
		select {
		case err := <-reloads:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no reload reported", what)
			return nil
		}
	}

	writeFile(t, path, storeV2)
	if err := next("a good change"); err != nil || ruleOf(s) != "v2" {
		t.Fatalf("a good change: reported %v, rule %s; want nil, v2", err, ruleOf(s))
	}
	// Touching the file (a new time, the same content) or replacing it by a copy reloads nothing: the next report is
	// the broken version's.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, storeV2)
	writeFile(t, path, broken)
	var pe *Error
	if err := next("a broken change"); !errors.As(err, &pe) || ruleOf(s) != "v2" {
		t.Fatalf("a broken change: reported %v, rule %s; want a *policy.Error, v2 kept", err, ruleOf(s))
	}
	// The file goes away: reported once (the broken version was not reported again either).
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := next("a removed file"); !errors.Is(err, os.ErrNotExist) || ruleOf(s) != "v2" {
		t.Fatalf("a removed file: reported %v, rule %s; want os.ErrNotExist, v2 kept", err, ruleOf(s))
	}
	// It comes back.
	writeFile(t, path, storeV1)
	if err := next("a renamed file"); err != nil || ruleOf(s) != "v1" {
		t.Fatalf("a renamed file: reported %v, rule %s; want nil, v1", err, ruleOf(s))
	}
	select {
	case err := <-reloads:
		t.Errorf("one more reload reported: %v", err)
	default:
	}
}

// TestStoreWatchWaitsForASettledFile: a file caught while it is being written in place is not loaded, even when what
// was written so far loads (a rule's tools without the requirement that follows would grant everyone); a content is
// loaded once two looks in a row find it.
func TestStoreWatchWaitsForASettledFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, "rules:\n  - name: v1\n    tools: [x]\n")
	s, err := NewStore(path)
	if err != nil {
		t.Fatal(err)
	}
	full := "rules:\n  - name: admins\n    tools: [\"*\"]\n    require:\n      roles: [admin]\n"
	half := full[:strings.Index(full, "    require:")]
	if _, err := Parse([]byte(half), "half"); err != nil {
		t.Fatalf("the half-written file should load for this test to mean anything: %v", err)
	}
	writeFile(t, path, half)
	if changed, _ := s.poll(); changed || ruleOf(s) != "v1" {
		t.Fatalf("half written, first look: changed %t, rule %s; want false, v1", changed, ruleOf(s))
	}
	writeFile(t, path, full)
	if changed, _ := s.poll(); changed || ruleOf(s) != "v1" {
		t.Fatalf("written, first look: changed %t, rule %s; want false, v1", changed, ruleOf(s))
	}
	if changed, err := s.poll(); !changed || err != nil || ruleOf(s) != "admins" {
		t.Fatalf("written, second look: changed %t, err %v, rule %s; want true, nil, admins", changed, err, ruleOf(s))
	}
	if d := s.Policy().Decide(&Facts{}, Tool, "anything"); d.Outcome != Deny {
		t.Errorf("a caller without the role: %v, want deny", d)
	}
}
