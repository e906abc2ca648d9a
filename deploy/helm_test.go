package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

const (
	chartDir = "helm/mcp-gateway"
	// kubeVersion is the oldest Kubernetes the chart supports (Chart.yaml's kubeVersion): helm template's own default
	// is older.
	kubeVersion = "1.30.0"
)

// helmValues are the values files CI renders the chart with: the defaults plus what is required, and the gateway in
// front of the user's own MCP server.
var helmValues = []string{"ci/default-values.yaml", "ci/own-upstream-values.yaml"}

// helm returns the helm binary: $HELM, which .ci/deploy-checks builds from the Go module proxy. Without it the Helm
// tests are skipped, except on CI, where they must run.
func helm(t *testing.T) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("HELM is not set: .ci/deploy-checks builds helm and sets it")
		}
		t.Skip("HELM is not set (.ci/deploy-checks builds helm and sets it; or: GOBIN=$dir go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
	}
	return h
}

// runHelm runs helm with args and returns its standard output, or its error with its standard error.
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// No repository configuration or cache of the machine's user: the chart has no dependencies to fetch.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		return out, &helmError{err: err, stderr: stderr.String()}
	}
	return out, nil
}

type helmError struct {
	err    error
	stderr string
}

func (e *helmError) Error() string { return e.err.Error() + ": " + e.stderr }

// helmTemplate renders the chart as release "gw" in namespace "mcp" with the values files and --set arguments given,
// and decodes every object strictly.
func helmTemplate(t *testing.T, valuesFiles []string, sets ...string) *manifests {
	t.Helper()
	args := []string{"template", "gw", chartDir, "--namespace", "mcp", "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", filepath.Join(chartDir, f))
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v", strings.Join(args, " "), err)
	}
	return decodeObjects(t, "helm template "+strings.Join(append(valuesFiles, sets...), " "), out)
}

// TestHelmLint runs helm lint --strict with each values file CI renders.
func TestHelmLint(t *testing.T) {
	for _, f := range helmValues {
		if out, err := runHelm(t, "lint", "--strict", chartDir, "--values", filepath.Join(chartDir, f), "--kube-version", kubeVersion); err != nil {
			t.Errorf("helm lint --values %s: %v\n%s", f, err, out)
		}
	}
}

// TestHelmRequired checks that the chart refuses to render without the public URL and the issuer, naming the value,
// and with contradicting or misspelt values.
func TestHelmRequired(t *testing.T) {
	for _, c := range []struct {
		sets []string
		want string
	}{
		{nil, "publicURL is required"},
		{[]string{"publicURL=https://mcp.example.com"}, "issuer.url or issuer.authkitSubdomain is required"},
		{[]string{"publicURL=https://mcp.example.com", "issuer.authkitSubdomain=my-app-54", "redis.url=redis://r:6379", "redis.existingSecret=r"}, "redis.url and redis.existingSecret"},
		{[]string{"publicURL=https://mcp.example.com", "issuer.authkitSubdomain=my-app-54", "client.existingSecret=oauth"}, "client.existingSecret needs client.id"},
		{[]string{"publicURL=https://mcp.example.com", "issuer.authkitSubdomain=my-app-54", "tools.workosApiKeyKey=K"}, "secrets.existingSecret, which is not set"},
		// values.schema.json: a misspelt value fails instead of being ignored.
		{[]string{"publicURL=https://mcp.example.com", "issuer.authkitSubdomain=my-app-54", "upstream.imagee.repository=x"}, "additional properties 'imagee' not allowed"},
	} {
		args := []string{"template", "gw", chartDir, "--kube-version", kubeVersion}
		for _, s := range c.sets {
			args = append(args, "--set", s)
		}
		_, err := runHelm(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("helm template --set %v: got %v, want an error saying %q", c.sets, err, c.want)
		}
	}
}

// TestHelmDefault checks the chart with its defaults: the gateway and the example tool service as in the kustomize base,
// and nothing a cluster without the Prometheus Operator refuses.
func TestHelmDefault(t *testing.T) {
	m := helmTemplate(t, helmValues[:1])
	pod := m.deployment.Spec.Template.Spec
	if got := containerNames(pod.Containers); !slices.Equal(got, []string{"gateway", "tools"}) {
		t.Fatalf("containers %v, want gateway and tools", got)
	}
	checkBuiltinOnly(t, "helm default values", m)
	gw, tools := m.container(t, "gateway"), m.container(t, "tools")
	gwEnv, toolsEnv := m.env(t, gw), m.env(t, tools)
	checkVarsRead(t, "helm: container gateway", "gateway", mapsKeys(gwEnv))
	checkVarsRead(t, "helm: container tools", "tools", mapsKeys(toolsEnv))
	if gw.Image != tools.Image || !strings.HasSuffix(gw.Image, ":"+chartAppVersion(t)) {
		t.Errorf("images %s and %s: want the one image, tagged with the chart's appVersion %s", gw.Image, tools.Image, chartAppVersion(t))
	}
	if gwEnv["GATEWAY_IDENTITY_SECRET"] == "" || gwEnv["GATEWAY_IDENTITY_SECRET"] != toolsEnv["GATEWAY_IDENTITY_SECRET"] ||
		len(gwEnv["GATEWAY_IDENTITY_SECRET"]) < 32 || len(gwEnv["GATEWAY_SESSION_SECRET"]) < 32 {
		t.Error("GATEWAY_IDENTITY_SECRET is not the same generated value of at least 32 bytes in both containers, or GATEWAY_SESSION_SECRET is short")
	}
	u := "http://" + toolsEnv["TOOLS_LISTEN_ADDR"] + "/mcp"
	if gwEnv["GATEWAY_UPSTREAM_URL"] != u {
		t.Errorf("GATEWAY_UPSTREAM_URL=%s, want the tool service's %s", gwEnv["GATEWAY_UPSTREAM_URL"], u)
	}
	checkLoopbackUpstream(t, gwEnv["GATEWAY_UPSTREAM_URL"], &corev1.Container{Name: "tools", Env: []corev1.EnvVar{{Name: "TOOLS_LISTEN_ADDR", Value: toolsEnv["TOOLS_LISTEN_ADDR"]}}})
	for _, s := range m.secrets {
		if s.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("generated Secret %s: want helm.sh/resource-policy: keep, or an uninstall loses the secrets", s.Name)
		}
	}
	checkPod(t, m, tools, toolsShutdown)
	checkEgress(t, m, gwEnv)
	checkSelectors(t, m)
}

// TestHelmOwnUpstream checks the chart in front of the user's MCP server: the server on the pod's loopback at
// GATEWAY_UPSTREAM_URL's port, the pod as safe as with the tool service, egress to an issuer on a port of its own, the
// policy mounted where GATEWAY_POLICY_FILE points and loadable, and the ServiceMonitor kube-prometheus-stack selects.
func TestHelmOwnUpstream(t *testing.T) {
	m := helmTemplate(t, helmValues[1:])
	pod := m.deployment.Spec.Template.Spec
	if got := containerNames(pod.Containers); !slices.Equal(got, []string{"gateway", "mcp-server"}) {
		t.Fatalf("containers %v, want gateway and mcp-server", got)
	}
	gw, server := m.container(t, "gateway"), m.container(t, "mcp-server")
	gwEnv := m.env(t, gw)
	checkVarsRead(t, "helm: container gateway", "gateway", mapsKeys(gwEnv))
	if server.Image != "registry.example.com/my-mcp-server:1.2.3" {
		t.Errorf("mcp-server image %s, want registry.example.com/my-mcp-server:1.2.3", server.Image)
	}
	checkLoopbackUpstream(t, gwEnv["GATEWAY_UPSTREAM_URL"], server)
	if _, ok := m.env(t, server)["GATEWAY_IDENTITY_SECRET"]; ok {
		t.Error("mcp-server on loopback gets GATEWAY_IDENTITY_SECRET, which it was not asked to check")
	}
	for _, p := range []*corev1.Probe{server.LivenessProbe, server.ReadinessProbe, server.StartupProbe} {
		if p != nil && (p.HTTPGet != nil || p.TCPSocket != nil) {
			t.Error("mcp-server on loopback has an httpGet or tcpSocket probe, which the kubelet sends to the pod's IP")
		}
	}
	checkPod(t, m, server, 0)
	checkEgress(t, m, gwEnv)
	checkSelectors(t, m)
	if m.monitor == nil || m.monitor.Labels["release"] != "kube-prometheus-stack" {
		t.Error("metrics.serviceMonitor.enabled: want a ServiceMonitor labelled release: kube-prometheus-stack")
	}
	checkPolicyMount(t, m, gw, gwEnv["GATEWAY_POLICY_FILE"])
}

// checkPolicyMount checks that file is a key of a ConfigMap mounted into container c, and that the gateway's policy
// parser accepts its content.
func checkPolicyMount(t *testing.T, m *manifests, c *corev1.Container, file string) {
	t.Helper()
	if file == "" {
		t.Fatal("GATEWAY_POLICY_FILE is not set")
	}
	for _, vm := range c.VolumeMounts {
		if path.Dir(file) != vm.MountPath {
			continue
		}
		for _, v := range m.deployment.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm := m.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			content, ok := cm.Data[path.Base(file)]
			if !ok {
				t.Fatalf("ConfigMap %s has no key %s", cm.Name, path.Base(file))
			}
			if _, err := policy.Parse([]byte(content), file); err != nil {
				t.Errorf("the policy in ConfigMap %s: %v", cm.Name, err)
			}
			if !vm.ReadOnly {
				t.Errorf("volume mount %s is writable", vm.Name)
			}
			return
		}
	}
	t.Errorf("GATEWAY_POLICY_FILE=%s is on no ConfigMap volume of container %s", file, c.Name)
}

// TestHelmValues checks the values the two files do not set: a server beyond loopback, secrets of the user's own, the
// Redis URL and the Option B client secret from Secrets, more environment, and fixed replicas.
func TestHelmValues(t *testing.T) {
	t.Run("upstream beyond loopback", func(t *testing.T) {
		m := helmTemplate(t, helmValues[1:], "upstream.loopback=false", "upstream.args={--listen,0.0.0.0:8080}")
		gwEnv, serverEnv := m.env(t, m.container(t, "gateway")), m.env(t, m.container(t, "mcp-server"))
		if serverEnv["GATEWAY_IDENTITY_SECRET"] == "" || serverEnv["GATEWAY_IDENTITY_SECRET"] != gwEnv["GATEWAY_IDENTITY_SECRET"] {
			t.Error("a server beyond loopback does not get the gateway's GATEWAY_IDENTITY_SECRET to check the signature with")
		}
		for _, rule := range m.policy.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port.String() == "mcp" || p.Port.IntValue() == 8080 {
					t.Error("the NetworkPolicy lets traffic in to the server's own port")
				}
			}
		}
	})
	t.Run("secrets of the user's own", func(t *testing.T) {
		m := helmTemplate(t, helmValues[:1], "secrets.existingSecret=mine", "client.id=client_01", "client.existingSecret=oauth",
			"redis.existingSecret=redis", "tools.workosApiKeyKey=MCP_USE_OAUTH_WORKOS_API_KEY")
		if len(m.secrets) != 0 {
			t.Errorf("with secrets.existingSecret the chart renders Secrets %v", mapsKeys2(m.secrets))
		}
		refs := map[string]string{}
		for _, c := range m.deployment.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs[c.Name+"/"+e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
				}
			}
		}
		for k, want := range map[string]string{
			"gateway/GATEWAY_IDENTITY_SECRET":            "mine/GATEWAY_IDENTITY_SECRET",
			"gateway/GATEWAY_SESSION_SECRET":             "mine/GATEWAY_SESSION_SECRET",
			"gateway/MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": "oauth/MCP_USE_OAUTH_WORKOS_CLIENT_SECRET",
			"gateway/GATEWAY_REDIS_URL":                  "redis/GATEWAY_REDIS_URL",
			"tools/GATEWAY_IDENTITY_SECRET":              "mine/GATEWAY_IDENTITY_SECRET",
			"tools/MCP_USE_OAUTH_WORKOS_API_KEY":         "mine/MCP_USE_OAUTH_WORKOS_API_KEY",
		} {
			if refs[k] != want {
				t.Errorf("%s from %q, want Secret/key %s", k, refs[k], want)
			}
		}
		for _, cm := range m.configMaps {
			for k, v := range cm.Data {
				if strings.Contains(k, "SECRET") || strings.HasPrefix(v, "redis://") {
					t.Errorf("ConfigMap %s holds %s", cm.Name, k)
				}
			}
		}
	})
	t.Run("extra environment and fixed replicas", func(t *testing.T) {
		m := helmTemplate(t, helmValues[:1], "extraEnv[0].name=OTEL_EXPORTER_OTLP_ENDPOINT", "extraEnv[0].value=http://collector:4318",
			"extraEnvFrom[0].secretRef.name=more", "env.GATEWAY_RATE_LIMIT_USER=20/s", "redis.url=redis://redis:6379",
			"autoscaling.enabled=false", "replicaCount=3")
		gw := m.container(t, "gateway")
		if !slices.ContainsFunc(gw.Env, func(e corev1.EnvVar) bool { return e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" }) ||
			!slices.ContainsFunc(gw.EnvFrom, func(e corev1.EnvFromSource) bool { return e.SecretRef != nil && e.SecretRef.Name == "more" }) {
			t.Error("extraEnv or extraEnvFrom did not reach the gateway container")
		}
		cm := m.configMaps[gw.EnvFrom[0].ConfigMapRef.Name].Data
		if cm["GATEWAY_RATE_LIMIT_USER"] != "20/s" || cm["GATEWAY_REDIS_URL"] != "redis://redis:6379" {
			t.Errorf("gateway ConfigMap %v: want GATEWAY_RATE_LIMIT_USER from env and GATEWAY_REDIS_URL from redis.url", cm)
		}
		if m.hpa != nil || m.deployment.Spec.Replicas == nil || *m.deployment.Spec.Replicas != 3 {
			t.Error("autoscaling.enabled=false: want no HorizontalPodAutoscaler and replicas: 3")
		}
	})
}

// checkBuiltinOnly checks that m holds nothing a cluster without a CustomResourceDefinition refuses.
func checkBuiltinOnly(t *testing.T, what string, m *manifests) {
	t.Helper()
	for _, obj := range m.objects {
		if gvk := obj.GetObjectKind().GroupVersionKind(); !builtinGroups[gvk.Group] {
			t.Errorf("%s holds a %s, which a cluster without its CustomResourceDefinition refuses", what, gvk)
		}
	}
}

// chartAppVersion is Chart.yaml's appVersion.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "appVersion:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Fatal("Chart.yaml has no appVersion")
	return ""
}

func mapsKeys2(m map[string]*corev1.Secret) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestHelmDocs checks that every value docs/deployment.md's Helm section names (a backticked dotted path such as
// `upstream.image.repository`) is one values.yaml has.
func TestHelmDocs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Kubernetes with Helm\n")
	section, _, _ = strings.Cut(section, "\n## ")
	if !ok {
		t.Fatal("docs/deployment.md has no section \"Kubernetes with Helm\"")
	}
	vb, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(vb, &values); err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`([a-z][A-Za-z]*(?:\\.[a-zA-Z]+)+)(?:\\.\\*)?`").FindAllStringSubmatch(section, -1)
	if len(named) < 10 {
		t.Fatalf("found %d value names in the Helm section; the pattern no longer matches how it names them", len(named))
	}
	for _, m := range named {
		var node any = values
		for _, key := range strings.Split(m[1], ".") {
			obj, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node, ok = obj[key]
			if !ok {
				node = nil
				break
			}
		}
		if node == nil && m[1] != "identity.Verify" { // the one dotted name there that is Go, not a value
			t.Errorf("docs/deployment.md names the value %s, which values.yaml does not have", m[1])
		}
	}
}
