package deploy

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/config"
)

// repoRoot is the repository this module sits in.
const repoRoot = ".."

// bin is the folder holding gateway and tools, built by TestMain with build.sh: the script the Dockerfile runs.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("./build.sh", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "deploy/build.sh:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaryVars returns, for each binary, the environment variables it reads and their defaults ("" for none).
func binaryVars(t *testing.T) map[string]map[string]string {
	t.Helper()
	return map[string]map[string]string{"gateway": gatewayVars(), "tools": toolsVars(t)}
}

// gatewayVars reads the env tags of config.Env, and its alias tags (aliases have no default of their own).
func gatewayVars() map[string]string {
	vars := map[string]string{}
	typ := reflect.TypeFor[config.Env]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name != "" && name != "-" {
			vars[name] = f.Tag.Get("envDefault")
		}
		if alias := f.Tag.Get("alias"); alias != "" {
			vars[alias] = ""
		}
	}
	return vars
}

// toolsVars reads the env and alias tags of the config struct in cmd/tools, which is package main and cannot be
// imported.
func toolsVars(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	dir := filepath.Join(repoRoot, "cmd", "tools")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || ts.Name.Name != "config" {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return false
			}
			for _, field := range st.Fields.List {
				if field.Tag == nil {
					continue
				}
				tag := reflect.StructTag(strings.Trim(field.Tag.Value, "`"))
				name, _, _ := strings.Cut(tag.Get("env"), ",")
				if name != "" && name != "-" {
					vars[name] = tag.Get("envDefault")
				}
				if alias := tag.Get("alias"); alias != "" {
					vars[alias] = ""
				}
			}
			return false
		})
	}
	if len(vars) == 0 {
		t.Fatalf("found no env tags on type config in %s", dir)
	}
	return vars
}

// checkVarsRead reports every variable in env that the binary does not read: a typo there silently leaves the default.
func checkVarsRead(t *testing.T, where, binary string, names []string) {
	t.Helper()
	read, ok := binaryVars(t)[binary]
	if !ok {
		t.Errorf("%s runs %q, which is neither gateway nor tools", where, binary)
		return
	}
	for _, n := range names {
		if _, ok := read[n]; !ok {
			t.Errorf("%s sets %s, which %s does not read", where, n, binary)
		}
	}
}

// Where the binaries bind and connect. The wiring tests move these, and only these, to loopback and free ports.
var (
	bindVars    = []string{"GATEWAY_LISTEN_ADDR", "GATEWAY_METRICS_ADDR", "TOOLS_LISTEN_ADDR"}
	connectVars = []string{"GATEWAY_UPSTREAM_URL"}
	// defaultAddrs are the binaries' own defaults for them (GATEWAY_LISTEN_ADDR's is built from HOST and PORT in code).
	defaultAddrs = map[string]string{"GATEWAY_LISTEN_ADDR": ":3000"}
)

// netKey is a port in one network namespace: a compose service, or a pod.
type netKey struct {
	netns, port string
}

// loopback moves declared addresses to free loopback ports, the same declared port in the same network namespace always
// to the same free port, so that what is wired together stays wired together and nothing else is.
type loopback struct {
	t     *testing.T
	ports map[netKey]string
	// peers are host names that name another network namespace (compose service names); they become 127.0.0.1.
	peers map[string]bool
}

func newLoopback(t *testing.T, peers ...string) *loopback {
	l := &loopback{t: t, ports: map[netKey]string{}, peers: map[string]bool{}}
	for _, p := range peers {
		l.peers[p] = true
	}
	return l
}

// port returns the free port standing for port in netns.
func (l *loopback) port(netns, port string) string {
	k := netKey{netns, port}
	if p, ok := l.ports[k]; ok {
		return p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	l.ports[k] = p
	return p
}

// env returns env with its bind and connect addresses moved for a process in netns. Binary defaults are made explicit
// first, since the default ports would collide on one machine.
func (l *loopback) env(netns, binary string, env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	read := binaryVars(l.t)[binary]
	for _, name := range append(slices.Clone(bindVars), connectVars...) {
		def, reads := read[name]
		if !reads {
			continue
		}
		if out[name] == "" {
			out[name] = cmpOr(defaultAddrs[name], def)
		}
	}
	for _, name := range bindVars {
		v, ok := out[name]
		if !ok || v == "off" {
			continue
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			l.t.Fatalf("%s=%q is not host:port", name, v)
		}
		if host != "" && host != "0.0.0.0" && host != "::" && !config.IsLoopbackHost(host) {
			l.t.Fatalf("%s=%q binds a host that a test on loopback cannot stand in for", name, v)
		}
		out[name] = net.JoinHostPort("127.0.0.1", l.port(netns, port))
	}
	for _, name := range connectVars {
		v, ok := out[name]
		if !ok {
			continue
		}
		out[name] = l.url(netns, v)
	}
	return out
}

// url moves a URL's host and port: a peer's name to that peer's namespace, loopback to netns itself; others stay.
func (l *loopback) url(netns, raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		l.t.Fatalf("%q is not a URL", raw)
	}
	hostport, path, _ := strings.Cut(rest, "/")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return raw // no explicit port: not something on this machine
	}
	switch {
	case l.peers[host]:
		netns = host
	case config.IsLoopbackHost(host):
	default:
		return raw
	}
	return scheme + "://" + net.JoinHostPort("127.0.0.1", l.port(netns, port)) + "/" + path
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// process is a binary started with exactly the given arguments and environment.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// environ turns env into a sorted KEY=value list.
func environ(env map[string]string) []string {
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return kv
}

// command is argv run from bin with exactly env: no variable of the test's own environment reaches it.
func command(ctx context.Context, t *testing.T, argv []string, env map[string]string) *exec.Cmd {
	t.Helper()
	if len(argv) == 0 {
		t.Fatal("empty command")
	}
	name := argv[0]
	if name != "gateway" && name != "tools" {
		t.Fatalf("command %q: the image holds gateway and tools only", argv)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), argv[1:]...)
	cmd.Env = environ(env)
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	return cmd
}

// start runs argv until the test ends, then stops it with SIGTERM, as a container runtime does, and expects a clean exit.
func start(t *testing.T, name string, argv []string, env map[string]string) *process {
	t.Helper()
	p := &process{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = command(context.Background(), t, argv, env)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.err != nil {
				t.Errorf("%s did not stop cleanly on SIGTERM: %v\n%s", name, p.err, p.out)
			}
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("%s did not stop within 30s of SIGTERM\n%s", name, p.out)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

// stop sends SIGTERM and waits for the process to end.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// eventually calls check until it returns nil, for up to 15s, and fails with its last error and the logs of procs.
func eventually(t *testing.T, what string, check func() error, procs ...*process) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("%s: %s exited: %v\n%s", what, p.name, p.err, p.out)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		<-tick.C
	}
}

// runCheck runs a health check command (a container's exec probe) once and returns its error with its output.
func runCheck(t *testing.T, argv []string, env map[string]string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := command(ctx, t, argv, env).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %v: %s", argv, err, out)
	}
	return nil
}

// getStatus answers the status of GET url.
func getStatus(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// wantStatus returns a check that GET url answers want.
func wantStatus(url string, want int) func() error {
	return func() error {
		got, err := getStatus(url)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("GET %s: got %d, want %d", url, got, want)
		}
		return nil
	}
}

// port returns the port of a host:port.
func port(t *testing.T, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return p
}

// duration parses a Go duration, failing the test when it does not parse.
func duration(t *testing.T, what, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return d
}

// atoi parses a decimal port number.
func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
