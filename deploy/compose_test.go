package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	composePath    = "compose.yaml"
	envExamplePath = ".env.example"
)

// compose is the part of the Compose specification that compose.yaml uses. Decoding is strict: a key the tests do not
// know (env_file, entrypoint, …) fails them instead of being ignored by them.
type compose struct {
	Services map[string]composeService `json:"services"`
	Networks map[string]struct {
		Internal bool `json:"internal"`
	} `json:"networks"`
	Volumes map[string]struct{} `json:"volumes"`
}

type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string            `json:"context"`
		Dockerfile string            `json:"dockerfile"`
		Args       map[string]string `json:"args"`
	} `json:"build"`
	Profiles        []string          `json:"profiles"`
	Command         []string          `json:"command"`
	Environment     map[string]string `json:"environment"`
	Ports           []string          `json:"ports"`
	Networks        []string          `json:"networks"`
	NetworkMode     string            `json:"network_mode"`
	DependsOn       json.RawMessage   `json:"depends_on"`
	Healthcheck     *composeHealth    `json:"healthcheck"`
	Restart         string            `json:"restart"`
	StopGracePeriod string            `json:"stop_grace_period"`
	User            string            `json:"user"`
	ReadOnly        bool              `json:"read_only"`
	CapDrop         []string          `json:"cap_drop"`
	SecurityOpt     []string          `json:"security_opt"`
	Volumes         []string          `json:"volumes"`
}

type composeHealth struct {
	Test        []string `json:"test"`
	Interval    string   `json:"interval"`
	Timeout     string   `json:"timeout"`
	Retries     int      `json:"retries"`
	StartPeriod string   `json:"start_period"`
	Disable     bool     `json:"disable"`
}

// binary is the program a service of ours runs ("gateway" or "tools"), or "" for another image.
func (s composeService) binary() string {
	if len(s.Command) > 0 && (s.Command[0] == "gateway" || s.Command[0] == "tools") {
		return s.Command[0]
	}
	return ""
}

// readEnvFile reads KEY=value lines, skipping blank lines and # comments, as Compose reads .env.
func readEnvFile(t *testing.T, path string) (map[string]string, []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !envName.MatchString(k) {
			t.Fatalf("%s:%d: not KEY=value: %q", path, n, line)
		}
		if _, dup := vars[k]; dup {
			t.Errorf("%s:%d: %s twice", path, n, k)
		}
		vars[k] = v
		order = append(order, k)
	}
	return vars, order
}

// envName is the form of a variable name.
var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// interpolation matches what Compose substitutes: $$, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error},
// ${NAME?error} and $NAME.
var interpolation = regexp.MustCompile(`\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*)|(\{[^}]*\}?))`)

// interpolate substitutes vars into s as Compose does, and records the names it met.
func interpolate(s string, vars map[string]string, seen map[string]bool) (string, error) {
	var errs []string
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		g := interpolation.FindStringSubmatch(m)
		switch {
		case g[1] != "":
			return "$"
		case g[6] != "":
			errs = append(errs, fmt.Sprintf("unsupported substitution %q", m))
			return m
		}
		name, op, arg := g[2]+g[5], g[3], g[4]
		seen[name] = true
		v, set := vars[name]
		switch op {
		case "":
			return v
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?", "?":
			if !set || (op == ":?" && v == "") {
				errs = append(errs, fmt.Sprintf("%s: %s", name, arg))
			}
		}
		return v
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// loadCompose reads compose.yaml, substitutes vars into every value, and decodes it strictly. It returns the names of
// every variable the file refers to.
func loadCompose(t *testing.T, vars map[string]string) (*compose, map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	var tree map[string]any
	if err := json.Unmarshal(j, &tree); err != nil {
		t.Fatal(err)
	}
	for k := range tree {
		if strings.HasPrefix(k, "x-") {
			delete(tree, k) // extension fields, merged where they are used
		}
	}
	seen := map[string]bool{}
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch v := v.(type) {
		case string:
			return interpolate(v, vars, seen)
		case map[string]any:
			for k, e := range v {
				w, err := walk(e)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				v[k] = w
			}
		case []any:
			for i, e := range v {
				w, err := walk(e)
				if err != nil {
					return nil, err
				}
				v[i] = w
			}
		}
		return v, nil
	}
	if _, err := walk(tree); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	j, _ = json.Marshal(tree)
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var c compose
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s does not decode strictly: %v", composePath, err)
	}
	return &c, seen
}

// envExample returns .env.example's values.
func envExample(t *testing.T) map[string]string {
	t.Helper()
	vars, _ := readEnvFile(t, envExamplePath)
	return vars
}

// omittedFromCompose are variables the binaries read that compose.yaml deliberately does not pass through.
var omittedFromCompose = map[string]string{
	"WORKOS_SUBDOMAIN":                   "alias of MCP_USE_OAUTH_WORKOS_SUBDOMAIN",
	"MCP_URL":                            "alias of GATEWAY_PUBLIC_URL",
	"HOST":                               "GATEWAY_LISTEN_ADDR is wiring, fixed in compose.yaml",
	"PORT":                               "GATEWAY_LISTEN_ADDR is wiring, fixed in compose.yaml",
	"MCP_USE_OAUTH_WORKOS_CLIENT_ID":     "Option B (a pre-registered client) is opt-in: add it to the gateway's environment to use it",
	"WORKOS_CLIENT_ID":                   "alias of MCP_USE_OAUTH_WORKOS_CLIENT_ID",
	"MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": "Option B only, with MCP_USE_OAUTH_WORKOS_CLIENT_ID",
	"GATEWAY_CLIENT_AUTH_METHOD":         "Option B only, with MCP_USE_OAUTH_WORKOS_CLIENT_SECRET",
	"GATEWAY_FACADE_SCOPES":              "Option B only, with MCP_USE_OAUTH_WORKOS_CLIENT_ID",
	"GATEWAY_FACADE_DEFAULT_SCOPE":       "Option B only, with MCP_USE_OAUTH_WORKOS_CLIENT_ID",
	"WORKOS_API_KEY":                     "alias of MCP_USE_OAUTH_WORKOS_API_KEY",
	"GATEWAY_DEV":                        "dev mode is the dev profile's gateway-dev service",
	"GATEWAY_POLICY_FILE":                "a policy is a file: mount it into the gateway's container and set the variable there",
	"GATEWAY_AUDIT_LOG":                  "audit events exist only with GATEWAY_POLICY_FILE",
	"GATEWAY_AUDIT_ARGUMENTS":            "audit events exist only with GATEWAY_POLICY_FILE",
	"GATEWAY_CIMD":                       "Option B only, with MCP_USE_OAUTH_WORKOS_CLIENT_ID",
	"GATEWAY_CIMD_ALLOW_PRIVATE":         "for tests on one machine; never in a deployment",
	"GATEWAY_CIMD_CA_FILE":               "Option B only: a file to mount into the gateway's container",
	// Several issuers and introspection are opt-in: add them to the gateway's environment to use them.
	"GATEWAY_ISSUER_AUDIENCES":            "only with several issuers whose audiences differ",
	"GATEWAY_TOKEN_VALIDATION":            "the default (auto) needs no setting; introspection is opt-in",
	"GATEWAY_INTROSPECTION_URL":           "introspection is opt-in, with GATEWAY_INTROSPECTION_CLIENT_ID",
	"GATEWAY_INTROSPECTION_ISSUER":        "introspection is opt-in, with GATEWAY_INTROSPECTION_CLIENT_ID",
	"GATEWAY_INTROSPECTION_CLIENT_ID":     "introspection is opt-in: a client registered at the authorization server for it",
	"GATEWAY_INTROSPECTION_CLIENT_SECRET": "introspection is opt-in, with GATEWAY_INTROSPECTION_CLIENT_ID",
	"GATEWAY_INTROSPECTION_AUTH_METHOD":   "introspection is opt-in, with GATEWAY_INTROSPECTION_CLIENT_ID",
	"GATEWAY_INTROSPECTION_CACHE_TTL":     "introspection is opt-in, with GATEWAY_INTROSPECTION_CLIENT_ID",
	"GATEWAY_TRACE_USER_ID":               "traces exist only with the OTEL_* variables, which are set together in the gateway's environment",
}

// TestComposeVariables checks that .env.example lists exactly the variables compose.yaml uses, that every variable a
// service of ours sets is one its binary reads, and that every variable the binaries read can be set.
func TestComposeVariables(t *testing.T) {
	vars := envExample(t)
	c, seen := loadCompose(t, vars)
	for name := range seen {
		if _, ok := vars[name]; !ok {
			t.Errorf("%s uses ${%s}, which %s does not list", composePath, name, envExamplePath)
		}
	}
	for name := range vars {
		if !seen[name] {
			t.Errorf("%s lists %s, which %s does not use", envExamplePath, name, composePath)
		}
	}
	set := map[string]map[string]bool{"gateway": {}, "tools": {}}
	for name, s := range c.Services {
		b := s.binary()
		if b == "" {
			continue
		}
		checkVarsRead(t, composePath+" service "+name, b, mapsKeys(s.Environment))
		if name != "gateway-dev" {
			for k := range s.Environment {
				set[b][k] = true
			}
		}
	}
	for b, read := range binaryVars(t) {
		for name := range read {
			if !set[b][name] && omittedFromCompose[name] == "" {
				t.Errorf("%s reads %s, which %s does not pass to it: add it there and to %s, or to omittedFromCompose with a reason",
					b, name, composePath, envExamplePath)
			}
		}
	}
}

func mapsKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestComposeProfiles checks the profiles: prod is the gateway and the tool service, dev is gateway --dev alone and
// needs no variable, monitoring is Prometheus and Grafana.
func TestComposeProfiles(t *testing.T) {
	c, _ := loadCompose(t, map[string]string{}) // no .env at all: what someone without an account has
	byProfile := map[string][]string{}
	for name, s := range c.Services {
		if len(s.Profiles) == 0 {
			t.Errorf("service %s has no profile, so it would start with --profile dev too", name)
		}
		for _, p := range s.Profiles {
			byProfile[p] = append(byProfile[p], name)
		}
	}
	for p, want := range map[string][]string{"prod": {"gateway", "preflight", "tools"}, "dev": {"gateway-dev"}, "monitoring": {"grafana", "prometheus"}} {
		got := byProfile[p]
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("profile %s: got services %v, want %v", p, got, want)
		}
	}
	dev := c.Services["gateway-dev"]
	if !slices.Equal(dev.Command, []string{"gateway", "--dev"}) {
		t.Errorf("gateway-dev command: got %q, want [gateway --dev]", dev.Command)
	}
	if dev.NetworkMode != "host" {
		t.Errorf("gateway-dev network_mode: got %q, want host (dev mode listens on loopback only)", dev.NetworkMode)
	}
	// localhost, as README says: dev mode advertises the host of its listen address (127.0.0.1 would show as such).
	if host, _, _ := net.SplitHostPort(dev.Environment["GATEWAY_LISTEN_ADDR"]); host != "localhost" {
		t.Errorf("gateway-dev GATEWAY_LISTEN_ADDR: got %q, want a localhost address, the host README names", dev.Environment["GATEWAY_LISTEN_ADDR"])
	}
	for name, s := range c.Services {
		if s.binary() == "" {
			continue
		}
		if s.Build == nil || s.Build.Context != ".." || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("service %s does not build the repository's Dockerfile", name)
		}
		tags, set := s.Build.Args["BUILD_TAGS"]
		if dev := name == "gateway-dev"; dev != (set && tags == "") || dev == (s.Image == c.Services["gateway"].Image) {
			t.Errorf("service %s: build args %v, image %s; want development mode (BUILD_TAGS empty) in the dev image alone",
				name, s.Build.Args, s.Image)
		}
		if s.User != "65532:65532" || !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("service %s: want user 65532:65532, read_only, cap_drop ALL and no-new-privileges", name)
		}
	}
}

// TestComposeIsolation checks that the tool service is reachable only through the gateway: no published port, no
// network shared with anything but the gateway, and the identity signature on both ends.
func TestComposeIsolation(t *testing.T) {
	c, _ := loadCompose(t, envExample(t))
	tools, gateway := c.Services["tools"], c.Services["gateway"]
	if len(tools.Ports) > 0 || tools.NetworkMode != "" {
		t.Errorf("tools: ports %v, network_mode %q; want neither", tools.Ports, tools.NetworkMode)
	}
	for _, n := range tools.Networks {
		for name, s := range c.Services {
			if name != "tools" && name != "gateway" && slices.Contains(s.Networks, n) {
				t.Errorf("network %s of the tool service also has %s", n, name)
			}
		}
	}
	shared := false
	for _, n := range tools.Networks {
		if slices.Contains(gateway.Networks, n) {
			shared = true
			if !c.Networks[n].Internal {
				t.Errorf("network %s between the gateway and the tool service is not internal", n)
			}
		}
	}
	if !shared {
		t.Error("the gateway and the tool service share no network")
	}
	// The secret reaches both from one variable, with a placeholder both refuse when it is missing.
	for _, s := range []composeService{gateway, tools} {
		if got := s.Environment["GATEWAY_IDENTITY_SECRET"]; got != "unset" {
			t.Errorf("GATEWAY_IDENTITY_SECRET with .env.example as it is: got %q, want the placeholder unset", got)
		}
	}
	for _, name := range []string{"gateway", "tools"} {
		s := c.Services[name]
		env := newLoopback(t, "tools", "gateway").env(name, s.binary(), s.Environment)
		out, err := command(t.Context(), t, s.Command, env).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "GATEWAY_IDENTITY_SECRET") {
			t.Errorf("%s without GATEWAY_IDENTITY_SECRET: got %v %s, want a refusal to start naming it", name, err, out)
		}
	}
}

// TestComposePreflight runs the preflight service's command as its container would, with sh, and checks that it stops
// "up" with a message naming deploy/.env while GATEWAY_IDENTITY_SECRET is missing or short, and passes a real secret;
// and that both services of ours wait for it.
func TestComposePreflight(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine to run the preflight command with")
	}
	for _, c := range []struct {
		name, secret string
		ok           bool
	}{
		{"as .env.example leaves it", envExample(t)["GATEWAY_IDENTITY_SECRET"], false},
		{"short", "replace-me", false},
		{"generated", randomSecret(t), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			vars := envExample(t)
			vars["GATEWAY_IDENTITY_SECRET"] = c.secret
			comp, _ := loadCompose(t, vars)
			pre := comp.Services["preflight"]
			if len(pre.Command) < 1 || pre.Command[0] != "sh" {
				t.Fatalf("preflight command %q: want sh -c …", pre.Command)
			}
			cmd := exec.Command(sh, pre.Command[1:]...)
			cmd.Env = environ(pre.Environment)
			out, err := cmd.CombinedOutput()
			if c.ok != (err == nil) || (!c.ok && !strings.Contains(string(out), "deploy/.env")) {
				t.Errorf("preflight with a %s secret: got %v %q, want success %v, or a message naming deploy/.env", c.name, err, out, c.ok)
			}
			if strings.Contains(string(out), c.secret) && c.secret != "" {
				t.Error("preflight prints the secret")
			}
		})
	}
	c, _ := loadCompose(t, envExample(t))
	for _, name := range []string{"gateway", "tools"} {
		if got := dependsOn(t, c.Services[name])["preflight"]; got != "service_completed_successfully" {
			t.Errorf("service %s depends on preflight with %q, want service_completed_successfully", name, got)
		}
	}
}

// dependsOn returns a service's depends_on as service → condition (service_started for the short list form).
func dependsOn(t *testing.T, s composeService) map[string]string {
	t.Helper()
	deps := map[string]string{}
	if len(s.DependsOn) == 0 {
		return deps
	}
	var list []string
	if err := json.Unmarshal(s.DependsOn, &list); err == nil {
		for _, d := range list {
			deps[d] = "service_started"
		}
		return deps
	}
	var long map[string]struct {
		Condition string `json:"condition"`
	}
	if err := json.Unmarshal(s.DependsOn, &long); err != nil {
		t.Fatalf("depends_on %s: %v", s.DependsOn, err)
	}
	for d, v := range long {
		deps[d] = cmpOr(v.Condition, "service_started")
	}
	return deps
}

// TestComposeStartup checks that "up" does not wait long on a health check: a service that waits for another to be
// healthy waits for that one's first check, which Docker runs only after the interval (start_interval, which would
// shorten it, needs Docker Engine 25 and is refused by docker-compose 1.29).
func TestComposeStartup(t *testing.T) {
	c, _ := loadCompose(t, envExample(t))
	for name, s := range c.Services {
		for dep, cond := range dependsOn(t, s) {
			if cond != "service_healthy" {
				continue
			}
			h := c.Services[dep].Healthcheck
			if h == nil || h.Disable {
				t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
				continue
			}
			if first := duration(t, dep+" interval", h.Interval); first > 5*time.Second {
				t.Errorf("%s waits for %s to be healthy: its first health check comes after %s, so up stalls that long", name, dep, first)
			}
		}
	}
}

// TestComposeGracePeriod checks that Compose waits longer than the gateway lets open requests finish.
func TestComposeGracePeriod(t *testing.T) {
	c, _ := loadCompose(t, envExample(t))
	g := c.Services["gateway"]
	timeout := cmpOr(g.Environment["GATEWAY_SHUTDOWN_TIMEOUT"], gatewayVars()["GATEWAY_SHUTDOWN_TIMEOUT"])
	if grace := duration(t, "stop_grace_period", g.StopGracePeriod); grace <= duration(t, "GATEWAY_SHUTDOWN_TIMEOUT", timeout) {
		t.Errorf("gateway stop_grace_period %s is not longer than GATEWAY_SHUTDOWN_TIMEOUT %s", grace, timeout)
	}
	for name, s := range c.Services {
		if s.binary() != "" && name != "gateway-dev" && (s.Restart != "unless-stopped" || s.Healthcheck == nil || s.Healthcheck.Disable) {
			t.Errorf("service %s: want restart unless-stopped and a health check", name)
		}
	}
}

// TestPrometheusTarget checks that the monitoring profile scrapes the gateway's metrics address.
func TestPrometheusTarget(t *testing.T) {
	c, _ := loadCompose(t, envExample(t))
	b, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	want := "gateway:" + port(t, c.Services["gateway"].Environment["GATEWAY_METRICS_ADDR"])
	var got []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			got = append(got, st.Targets...)
		}
	}
	if !slices.Equal(got, []string{want}) {
		t.Errorf("prometheus.yml targets: got %v, want [%s]", got, want)
	}
	if p := c.Services["prometheus"]; !slices.Contains(p.Networks, "monitoring") || !slices.Contains(c.Services["gateway"].Networks, "monitoring") {
		t.Error("Prometheus and the gateway do not share the monitoring network")
	}
}
