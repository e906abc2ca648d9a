package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
)

// instruction is one Dockerfile instruction: its keyword, flags and arguments.
type instruction struct {
	cmd   string // lower case: from, run, copy, …
	flags []string
	args  []string
	json  bool // exec form: ["a", "b"]
	line  int
}

// stage is one FROM and what follows it.
type stage struct {
	from  instruction
	name  string
	instr []instruction
}

// parseDockerfile parses ../Dockerfile with BuildKit's own parser and returns the ARGs before the first FROM and the
// stages.
func parseDockerfile(t *testing.T) (globalArgs []instruction, stages []stage) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	// BuildKit's own typed parse, with its lint rules as errors: flags, durations and forms must be what a build takes.
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		t.Errorf("Dockerfile:%d: %s: %s", line, rule, msg)
	}})
	if _, _, err := instructions.Parse(res.AST, lint); err != nil {
		t.Errorf("Dockerfile: %v", err)
	}
	for _, n := range res.AST.Children {
		in := instruction{cmd: strings.ToLower(n.Value), flags: n.Flags, json: n.Attributes["json"], line: n.StartLine}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		switch {
		case in.cmd == "from":
			st := stage{from: in}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "as") {
				st.name = in.args[2]
			}
			stages = append(stages, st)
		case len(stages) == 0:
			globalArgs = append(globalArgs, in)
		default:
			stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, in)
		}
	}
	return globalArgs, stages
}

// goVersion returns the go line of the repository's go.mod.
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go line")
	return ""
}

// TestDockerfile checks the image against the issue: Go pinned to go.mod's version, the build through deploy/build.sh
// and nothing else, a runtime stage with no shell step, a numeric non-root user, shell-free health check and command,
// OCI labels.
func TestDockerfile(t *testing.T) {
	args, stages := parseDockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("Dockerfile: got %d stages, want build and runtime", len(stages))
	}
	defaults := map[string]string{}
	for _, a := range args {
		if a.cmd == "arg" {
			k, v, _ := strings.Cut(a.args[0], "=")
			defaults[k] = v
		}
	}
	if got, want := defaults["GO_VERSION"], goVersion(t); got != want {
		t.Errorf("Dockerfile ARG GO_VERSION=%s, want go.mod's %s", got, want)
	}
	build, runtime := stages[0], stages[1]
	if build.name != "build" || !strings.Contains(build.from.args[0], "golang:${GO_VERSION}") {
		t.Errorf("build stage: FROM %v, want golang:${GO_VERSION} AS build", build.from.args)
	}

	// The one RUN that builds is deploy/build.sh; no other instruction runs go build.
	var builds []string
	for _, st := range stages {
		for _, in := range st.instr {
			if in.cmd != "run" {
				continue
			}
			cmdline := strings.Join(in.args, " ")
			if strings.Contains(cmdline, "go build") || strings.Contains(cmdline, "go install") {
				t.Errorf("Dockerfile:%d builds with %q; only deploy/build.sh may", in.line, cmdline)
			}
			if strings.Contains(cmdline, "build.sh") {
				builds = append(builds, cmdline)
			}
		}
	}
	want := "GOOS=$TARGETOS GOARCH=$TARGETARCH BUILD_TAGS=$BUILD_TAGS deploy/build.sh /out"
	if !slices.Equal(builds, []string{want}) {
		t.Errorf("Dockerfile builds with %q, want [%s]", builds, want)
	}

	var (
		labels  []string
		user    string
		health  []string
		command []string
		copied  bool
	)
	for _, in := range runtime.instr {
		switch in.cmd {
		case "run", "shell", "entrypoint":
			t.Errorf("runtime stage, Dockerfile:%d: %s; the runtime image has no shell and needs no step", in.line, in.cmd)
		case "label":
			for i := 0; i < len(in.args); i += 3 { // key, value, separator
				labels = append(labels, in.args[i])
			}
		case "user":
			user = in.args[0]
		case "healthcheck":
			if !in.json {
				t.Errorf("Dockerfile:%d: HEALTHCHECK in shell form needs a shell", in.line)
			}
			health = in.args[1:] // after "CMD"
		case "cmd":
			if !in.json {
				t.Errorf("Dockerfile:%d: CMD in shell form needs a shell", in.line)
			}
			command = in.args
		case "copy":
			copied = slices.Contains(in.flags, "--from=build") && slices.Equal(in.args, []string{"/out/gateway", "/out/tools", "/usr/local/bin/"})
		}
	}
	if !copied {
		t.Error("runtime stage does not COPY --from=build /out/gateway /out/tools /usr/local/bin/")
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("USER %q: want a numeric non-root user, which Kubernetes' runAsNonRoot can check", user)
	}
	if !slices.Equal(health, []string{"gateway", "--healthcheck"}) || !slices.Equal(command, []string{"gateway"}) {
		t.Errorf("HEALTHCHECK CMD %q and CMD %q, want [gateway --healthcheck] and [gateway]", health, command)
	}
	for _, l := range []string{"title", "description", "source", "version", "revision"} {
		if !slices.Contains(labels, "org.opencontainers.image."+l) {
			t.Errorf("no label org.opencontainers.image.%s", l)
		}
	}
}

// classicFlags are the instruction flags the classic builder (DOCKER_BUILDKIT=0, Debian's docker.io) accepts; any other
// is BuildKit's alone.
var classicFlags = map[string][]string{
	"from":        {"--platform"},
	"copy":        {"--from", "--chown"},
	"add":         {"--chown"},
	"healthcheck": {"--interval", "--timeout", "--start-period", "--retries"},
}

// platformArgs are the arguments BuildKit sets by itself and the classic builder leaves empty.
var platformArgs = regexp.MustCompile(`\$\{?(BUILD|TARGET)(PLATFORM|OS|ARCH|VARIANT)\b`)

// TestDockerfileClassicBuilder checks that the Dockerfile uses nothing only BuildKit understands, so that "docker build"
// works with the classic builder too: no heredoc, only the flags the classic builder knows, and no BuildKit platform
// argument in FROM, where the classic builder fails with "failed to parse platform".
func TestDockerfileClassicBuilder(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.AST.Children {
		cmd := strings.ToLower(n.Value)
		if len(n.Heredocs) > 0 {
			t.Errorf("Dockerfile:%d: a heredoc, which only BuildKit reads", n.StartLine)
		}
		for _, f := range n.Flags {
			name, value, _ := strings.Cut(f, "=")
			if !slices.Contains(classicFlags[cmd], name) {
				t.Errorf("Dockerfile:%d: %s %s, which only BuildKit knows", n.StartLine, strings.ToUpper(cmd), name)
			}
			if cmd == "from" && platformArgs.MatchString(value) {
				t.Errorf("Dockerfile:%d: FROM %s: the classic builder leaves BuildKit's platform arguments empty and fails", n.StartLine, f)
			}
		}
	}
}

// TestBinaries checks what build.sh made: static executables without file system paths of this machine, and a
// production gateway without development mode.
func TestBinaries(t *testing.T) {
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gateway", "tools"} {
		path := filepath.Join(bin, name)
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked", name)
			}
		}
		f.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(abs)) {
			t.Errorf("%s contains the path %s: not built with -trimpath", name, abs)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := command(ctx, t, []string{"gateway", "--dev"}, nil).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Errorf("the production gateway ran --dev: %v %s", err, out)
	}
}

// TestDockerignore checks that the build context holds every file the two binaries are built from, and no secret.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(rel string) bool {
		ex, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}

	// Every file of every package of this module that the binaries import, with and without development mode.
	need := []string{"go.mod", "go.sum", "deploy/build.sh"}
	for _, tags := range []string{"nodev", ""} {
		cmd := exec.Command("go", "list", "-deps", "-tags="+tags, "-f",
			`{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, "./cmd/gateway", "./cmd/tools")
		cmd.Dir = repoRoot
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		abs, _ := filepath.Abs(repoRoot)
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			rel, err := filepath.Rel(abs, fields[0])
			if err != nil || strings.HasPrefix(rel, "..") {
				continue // a dependency from the module cache, which go mod download fetches in the image
			}
			for _, f := range fields[1:] {
				need = append(need, filepath.Join(rel, f))
			}
		}
	}
	for _, f := range need {
		if excluded(f) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", f)
		}
	}
	for _, f := range []string{".git/config", ".env", "deploy/.env", "deploy/kubernetes/overlays/example/secrets.env",
		"e2e/node_modules/x/index.js", "proxy/proxy.test", "deploy/compose.yaml"} {
		if !excluded(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}
