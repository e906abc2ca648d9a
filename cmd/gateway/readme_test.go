//go:build !nodev

package main

import (
	"bufio"
	"context"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy"
)

// quickStart is what the README's first code block must say: the two commands a newcomer needs.
var quickStart = []string{
	"go run ./cmd/gateway --dev",
	"go test -race -count=1 ./...",
}

// readme returns the repository's README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// firstShellBlock returns the commands (neither comments nor blank lines) of the first ```sh block of md.
func firstShellBlock(md string) []string {
	var cmds []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(md))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case !in && line == "```sh":
			in = true
		case in && line == "```":
			return cmds
		case in && line != "" && !strings.HasPrefix(line, "#"):
			cmds = append(cmds, line)
		}
	}
	return nil
}

// TestReadmeQuickStart keeps the README's first commands and the code in step: the block holds exactly the two
// commands, CI runs the same test command, and the gateway command, run with its arguments, serves the whole flow to
// a real client that signs in through the pages as a browser would.
func TestReadmeQuickStart(t *testing.T) {
	md := readme(t)
	if got := firstShellBlock(md); !slices.Equal(got, quickStart) {
		t.Fatalf("README.md's first ```sh block: got %q, want %q", got, quickStart)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(ci), "\n"), quickStart[1]) {
		t.Errorf(".ci/run does not run the README's test command %q", quickStart[1])
	}

	args := strings.Fields(strings.TrimPrefix(quickStart[0], "go run ./cmd/gateway"))
	// Free ports instead of 3000 and 3002; nothing else is added to the README's command.
	mcpURL, _, _ := startDev(t, args, devEnv(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := connectWithOAuth(t, ctx, mcpURL, signInAs("member@example.com"))
	callAllTools(t, ctx, s,
		"map[email:member@example.com name:Max Member organizationId:org_dev_acme userId:user_dev_member]",
		"map[permissions:[users:read] roles:[member] scopes:[offline_access]]",
		"member@example.com")
}

// TestReadmeDocumentsDevAndCheck checks that the README names every development-mode variable, and that its
// troubleshooting starts with --check.
func TestReadmeDocumentsDevAndCheck(t *testing.T) {
	md := readme(t)
	vars := []string{"GATEWAY_DEV"}
	for f := range reflect.TypeFor[devConfig]().Fields() {
		if name := f.Tag.Get("env"); strings.HasPrefix(name, "GATEWAY_DEV_") {
			vars = append(vars, name)
		}
	}
	for _, v := range vars {
		if !strings.Contains(md, "`"+v+"`") {
			t.Errorf("README.md does not document %s", v)
		}
	}
	_, trouble, ok := strings.Cut(md, "\n## Troubleshooting")
	if !ok {
		t.Fatal("README.md has no Troubleshooting section")
	}
	_, trouble, _ = strings.Cut(trouble, "\n\n")
	first, _, _ := strings.Cut(trouble, "\n\n")
	if !strings.Contains(first, "go run ./cmd/gateway --check") {
		t.Errorf("README.md's troubleshooting does not start with go run ./cmd/gateway --check; it starts with:\n%s", first)
	}
}

// TestReadmeDocumentsEveryVariable checks that README.md's configuration table has a row for every variable the
// gateway reads.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	md := readme(t)
	_, table, ok := strings.Cut(md, "\n## Configuration")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	for f := range reflect.TypeFor[proxy.Config]().Fields() {
		name := f.Tag.Get("env")
		if name == "" || name == "-" {
			continue
		}
		if !strings.Contains(table, "`"+name+"`") {
			t.Errorf("README.md's Configuration section does not document %s", name)
		}
	}
}

// TestReadmeIsAFrontDoor checks that README.md stays a front door (at most 25 KiB; depth goes to docs/) and that every
// docs/ page it links to exists.
func TestReadmeIsAFrontDoor(t *testing.T) {
	md := readme(t)
	if len(md) > 25<<10 {
		t.Errorf("README.md is %d bytes, over 25 KiB: move depth to docs/", len(md))
	}
	for _, part := range strings.Split(md, "](docs/")[1:] {
		page, _, _ := strings.Cut(part, ")")
		page, _, _ = strings.Cut(page, "#")
		if _, err := os.Stat("../../docs/" + page); err != nil {
			t.Errorf("README.md links to docs/%s: %v", page, err)
		}
	}
}
