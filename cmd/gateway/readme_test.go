//go:build !nodev

package main

import (
	"bufio"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/config"
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

// TestReadmeConfigurationTables keeps docs/configuration.md's tables and the binaries' config structs in step: the
// first table documents exactly config.Env's variables, the second exactly those of the tool
// service's config; each with its alias, if any, and with its envDefault wherever the table states a default literally
// (`30s`, or `:3000` (or …)). A table that says there is none ("—", "unset …", "none") means no envDefault.
func TestReadmeConfigurationTables(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readme(t), "(docs/configuration.md)") {
		t.Error("README.md does not link docs/configuration.md")
	}
	tables := markdownTables(string(b))
	if len(tables) != 2 {
		t.Fatalf("docs/configuration.md has %d tables, want 2 (the gateway's, the tool service's)", len(tables))
	}
	var gateway []reflect.StructTag
	for f := range reflect.TypeFor[config.Env]().Fields() {
		gateway = append(gateway, f.Tag)
	}
	for _, b := range []struct {
		name string
		tags []reflect.StructTag
	}{{"the gateway (config.Env)", gateway}, {"the tool service (cmd/tools config)", toolsConfigTags(t)}} {
		documented := documentedVars(t, tables[0])
		tables = tables[1:]
		declared := declaredVars(b.tags)
		for name, d := range declared {
			doc, ok := documented[name]
			switch {
			case !ok:
				t.Errorf("docs/configuration.md does not document %s of %s", name, b.name)
			case doc.alias != d.alias:
				t.Errorf("docs/configuration.md documents %s of %s with alias %q, but its alias tag is %q", name, b.name, doc.alias, d.alias)
			case doc.stated && doc.def != d.def:
				t.Errorf("docs/configuration.md states the default of %s of %s as %q, but its envDefault is %q", name, b.name, doc.def, d.def)
			case doc.none && d.def != "":
				t.Errorf("docs/configuration.md says %s of %s has no default, but its envDefault is %q", name, b.name, d.def)
			}
		}
		for name := range documented {
			if _, ok := declared[name]; !ok {
				t.Errorf("docs/configuration.md documents %s for %s, which does not read it", name, b.name)
			}
		}
	}
}

// configVar is a variable as a config struct declares it or a README table documents it.
type configVar struct {
	alias  string
	def    string // the envDefault, or the default the table states literally
	stated bool   // the table states def literally
	none   bool   // the table says there is no default
}

// declaredVars returns the variables that struct tags declare, by name.
func declaredVars(tags []reflect.StructTag) map[string]configVar {
	vars := map[string]configVar{}
	for _, tag := range tags {
		if name, _, _ := strings.Cut(tag.Get("env"), ","); name != "" && name != "-" {
			vars[name] = configVar{alias: tag.Get("alias"), def: tag.Get("envDefault")}
		}
	}
	return vars
}

var (
	// tableVariable is a variable cell: `NAME`, or `NAME` (alias `OTHER`).
	tableVariable = regexp.MustCompile("^`([A-Z0-9_]+)`(?: \\(alias `([A-Z0-9_]+)`\\))?$")
	// tableLiteral is a default cell that states the default literally: `value`, maybe followed by a remark in
	// parentheses.
	tableLiteral = regexp.MustCompile("^`([^`]*)`(?: \\(.*\\))?$")
)

// documentedVars returns the variables a table's rows document, by name.
func documentedVars(t *testing.T, rows [][]string) map[string]configVar {
	t.Helper()
	vars := map[string]configVar{}
	for _, row := range rows {
		m := tableVariable.FindStringSubmatch(row[0])
		if m == nil {
			t.Errorf("README.md: configuration row %q: want `NAME` or `NAME` (alias `OTHER`) in its first cell", row[0])
			continue
		}
		v := configVar{alias: m[2]}
		def := row[1]
		if lit := tableLiteral.FindStringSubmatch(def); lit != nil {
			v.def, v.stated = lit[1], true
		}
		v.none = def == "—" || strings.HasPrefix(def, "unset") || strings.HasPrefix(def, "none")
		if _, dup := vars[m[1]]; dup {
			t.Errorf("README.md documents %s twice in one table", m[1])
		}
		vars[m[1]] = v
	}
	return vars
}

// markdownTables returns the body rows of every table with the header | variable | default | meaning | in md, each
// row as its trimmed cells.
func markdownTables(md string) [][][]string {
	var tables [][][]string
	var cur [][]string
	in := false
	for line := range strings.Lines(md + "\n") {
		line = strings.TrimSpace(line)
		switch {
		case !strings.HasPrefix(line, "|"):
			if in {
				tables = append(tables, cur)
			}
			cur, in = nil, false
		case line == "| variable | default | meaning |":
			in = true
		case in && !strings.HasPrefix(line, "| ---"):
			var cells []string
			for c := range strings.SplitSeq(strings.Trim(line, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			cur = append(cur, cells)
		}
	}
	return tables
}

// toolsConfigTags returns the struct tags of the tool service's config type, read from its source: it is package
// main, which cannot be imported.
func toolsConfigTags(t *testing.T) []reflect.StructTag {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("../tools/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var tags []reflect.StructTag
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || ts.Name.Name != "config" {
				return true
			}
			for _, field := range ts.Type.(*ast.StructType).Fields.List {
				if field.Tag != nil {
					tags = append(tags, reflect.StructTag(strings.Trim(field.Tag.Value, "`")))
				}
			}
			return false
		})
	}
	if len(tags) == 0 {
		t.Fatal("found no tagged fields of type config in cmd/tools")
	}
	return tags
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
