package deploy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/mcp-gateway/gateway/proxy/config"
)

const (
	kubeDir        = "kubernetes"
	overlay        = "overlays/example"
	secretsExample = overlay + "/secrets.env.example"
	// toolsShutdown is cmd/tools' shutdownTimeout: how long the tool service drains after SIGTERM.
	toolsShutdown = 10 * time.Second
)

// manifests are the decoded objects of one kustomize build.
type manifests struct {
	objects    []runtime.Object
	deployment *appsv1.Deployment
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	policy     *networkingv1.NetworkPolicy
	monitor    *monitoringv1.ServiceMonitor
	// secretValues are the values the test put in the overlay's secrets.env.
	secretValues map[string]string
}

// kustomizeBuild builds dir (relative to kubernetes/) as `kustomize build` does, in memory, and decodes every object
// strictly into its Kubernetes API type: an unknown kind, an unknown field or a duplicate field fails the test.
//
// The overlay's secrets.env is the operator's and is not in the repository: the build gets one written by the test,
// with a fresh value for each key that secrets.env.example lists.
func kustomizeBuild(t *testing.T, dir string) *manifests {
	t.Helper()
	return kustomizeBuildWith(t, dir, nil)
}

// kustomizeBuildWith is kustomizeBuild with extra files (paths relative to kubernetes/) added to the tree.
func kustomizeBuildWith(t *testing.T, dir string, extra map[string]string) *manifests {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(kubeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(path) == "secrets.env" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile("/"+filepath.ToSlash(path), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, secretValues: map[string]string{}}
	_, order := readEnvFile(t, filepath.Join(kubeDir, secretsExample))
	var secrets strings.Builder
	for _, k := range order {
		v := "sk_test_wiring"
		if strings.HasSuffix(k, "_SECRET") {
			v = randomSecret(t)
		}
		m.secretValues[k] = v
		fmt.Fprintf(&secrets, "%s=%s\n", k, v)
	}
	for _, d := range []string{overlay, dir} {
		if err := mem.WriteFile("/"+kubeDir+"/"+d+"/secrets.env", []byte(secrets.String())); err != nil {
			t.Fatal(err)
		}
	}
	for path, content := range extra {
		if err := mem.WriteFile("/"+kubeDir+"/"+path, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}

	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/"+kubeDir+"/"+dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	codec := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for i := 0; ; i++ {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := codec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("kustomize build %s, object %d: %v\n%s", dir, i, err, doc)
		}
		m.objects = append(m.objects, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			if m.deployment != nil {
				t.Fatal("two Deployments")
			}
			m.deployment = o
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *corev1.Secret:
			m.secrets[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdb = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpa = o
		case *networkingv1.NetworkPolicy:
			m.policy = o
		case *monitoringv1.ServiceMonitor:
			m.monitor = o
		case *corev1.Namespace, *corev1.ServiceAccount:
		default:
			t.Errorf("kustomize build %s: unexpected %s", dir, gvk)
		}
	}
	return m
}

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// container returns the pod's container named name.
func (m *manifests) container(t *testing.T, name string) *corev1.Container {
	t.Helper()
	for i := range m.deployment.Spec.Template.Spec.Containers {
		if c := &m.deployment.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("the pod has no container %s", name)
	return nil
}

// env returns the environment Kubernetes gives container c: envFrom first, then env, which wins.
func (m *manifests) env(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := m.configMaps[from.ConfigMapRef.Name]
			if cm == nil {
				t.Fatalf("container %s: no ConfigMap %s", c.Name, from.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			s := m.secrets[from.SecretRef.Name]
			if s == nil {
				t.Fatalf("container %s: no Secret %s", c.Name, from.SecretRef.Name)
			}
			for k, v := range s.Data {
				env[from.Prefix+k] = string(v)
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := m.secrets[ref.Name]
			if s == nil {
				t.Fatalf("container %s, %s: no Secret %s", c.Name, e.Name, ref.Name)
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				t.Fatalf("container %s, %s: Secret %s has no key %s", c.Name, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = string(v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := m.configMaps[ref.Name]
			if cm == nil {
				t.Fatalf("container %s, %s: no ConfigMap %s", c.Name, e.Name, ref.Name)
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				t.Fatalf("container %s, %s: ConfigMap %s has no key %s", c.Name, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		default:
			t.Fatalf("container %s, %s: a source the tests cannot resolve", c.Name, e.Name)
		}
	}
	return env
}

// containerPort resolves a probe's or a Service's port (a name or a number) to a port of container c.
func containerPort(t *testing.T, c *corev1.Container, name string) string {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name || strconv.Itoa(int(p.ContainerPort)) == name {
			return strconv.Itoa(int(p.ContainerPort))
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, name)
	return ""
}

// TestKubernetesDecodesStrictly builds the base and the example overlay and decodes every object strictly.
func TestKubernetesDecodesStrictly(t *testing.T) {
	for _, dir := range []string{"base", overlay} {
		t.Run(dir, func(t *testing.T) {
			m := kustomizeBuild(t, dir)
			if m.deployment == nil || m.pdb == nil || m.hpa == nil || m.policy == nil || len(m.services) != 2 || len(m.configMaps) != 2 {
				t.Errorf("kustomize build %s: want a Deployment, two Services, two ConfigMaps, a PodDisruptionBudget, a HorizontalPodAutoscaler and a NetworkPolicy", dir)
			}
			if dir == overlay && (m.monitor == nil || len(m.secrets) != 1) {
				t.Errorf("kustomize build %s: want a ServiceMonitor and the Secret", dir)
			}
		})
	}
}

// TestKubernetesPod checks the pod against what the issue asks and what the binaries need.
func TestKubernetesPod(t *testing.T) {
	m := kustomizeBuild(t, overlay)
	pod := m.deployment.Spec.Template.Spec
	if len(pod.Containers) != 2 || len(pod.InitContainers) != 0 {
		t.Fatalf("the pod has %d containers and %d init containers; want gateway and tools", len(pod.Containers), len(pod.InitContainers))
	}
	gw, tools := m.container(t, "gateway"), m.container(t, "tools")
	gwEnv, toolsEnv := m.env(t, gw), m.env(t, tools)

	t.Run("variables are read", func(t *testing.T) {
		for _, c := range pod.Containers {
			if len(c.Command) == 0 {
				t.Fatalf("container %s has no command", c.Name)
			}
			checkVarsRead(t, "container "+c.Name, c.Command[0], mapsKeys(m.env(t, &c)))
		}
		if gw.Image != tools.Image {
			t.Errorf("images %s and %s differ; the one image holds both binaries", gw.Image, tools.Image)
		}
		if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
			t.Error("enableServiceLinks is not false: Service variables such as GATEWAY_PORT could reach the binaries")
		}
		keys, _ := readEnvFile(t, filepath.Join(kubeDir, secretsExample))
		for name, s := range m.secrets {
			if got, want := len(s.Data), len(keys); got != want {
				t.Errorf("Secret %s has %d keys, want the %d of %s", name, got, want, secretsExample)
			}
		}
	})

	t.Run("security", func(t *testing.T) {
		sc := pod.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Error("pod securityContext: want runAsNonRoot, a non-zero runAsUser and seccomp RuntimeDefault")
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Error("automountServiceAccountToken is not false")
		}
		for _, c := range pod.Containers {
			csc := c.SecurityContext
			if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
				csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
				csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
				(csc.Privileged != nil && *csc.Privileged) {
				t.Errorf("container %s securityContext: want no privilege escalation, read-only root, all capabilities dropped", c.Name)
			}
			r := c.Resources
			if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
				t.Errorf("container %s: want CPU and memory requests and a memory limit", c.Name)
			}
		}
	})

	t.Run("tool service on loopback only", func(t *testing.T) {
		host, _, err := net.SplitHostPort(toolsEnv["TOOLS_LISTEN_ADDR"])
		if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
			t.Errorf("TOOLS_LISTEN_ADDR=%q: want a loopback address", toolsEnv["TOOLS_LISTEN_ADDR"])
		}
		if len(tools.Ports) > 0 {
			t.Errorf("the tools container declares ports %v", tools.Ports)
		}
		if gwEnv["GATEWAY_IDENTITY_SECRET"] == "" || gwEnv["GATEWAY_IDENTITY_SECRET"] != toolsEnv["GATEWAY_IDENTITY_SECRET"] {
			t.Error("GATEWAY_IDENTITY_SECRET is not the same non-empty value in both containers")
		}
	})

	t.Run("probes and ports", func(t *testing.T) {
		listen := port(t, gwEnv["GATEWAY_LISTEN_ADDR"])
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{{"liveness", gw.LivenessProbe, "/healthz"}, {"readiness", gw.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("gateway %s probe: want an HTTP GET of %s", p.name, p.path)
				continue
			}
			if p.probe.HTTPGet.Path != p.path || containerPort(t, gw, p.probe.HTTPGet.Port.String()) != listen {
				t.Errorf("gateway %s probe: GET %s on port %s, want %s on GATEWAY_LISTEN_ADDR's port %s",
					p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, listen)
			}
		}
		if tools.LivenessProbe == nil || tools.LivenessProbe.Exec == nil || !slices.Equal(tools.LivenessProbe.Exec.Command, []string{"tools", "--healthcheck"}) {
			t.Error("tools liveness probe: want exec tools --healthcheck")
		}
		metrics := gwEnv["GATEWAY_METRICS_ADDR"]
		host, mport, err := net.SplitHostPort(metrics)
		if err != nil || config.IsLoopbackHost(host) {
			t.Errorf("GATEWAY_METRICS_ADDR=%q: want an address beyond loopback, or Prometheus cannot scrape the pod", metrics)
		}
		ann := m.deployment.Spec.Template.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != mport || containerPort(t, gw, "metrics") != mport {
			t.Errorf("metrics: annotations %v and container port metrics=%s, want both to be GATEWAY_METRICS_ADDR's port %s",
				ann, containerPort(t, gw, "metrics"), mport)
		}
	})

	t.Run("termination", func(t *testing.T) {
		shutdown := duration(t, "GATEWAY_SHUTDOWN_TIMEOUT", cmpOr(gwEnv["GATEWAY_SHUTDOWN_TIMEOUT"], gatewayVars()["GATEWAY_SHUTDOWN_TIMEOUT"]))
		pause := func(c *corev1.Container) time.Duration {
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
				return 0
			}
			return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		if grace < pause(gw)+shutdown {
			t.Errorf("terminationGracePeriodSeconds %s < gateway preStop %s + GATEWAY_SHUTDOWN_TIMEOUT %s", grace, pause(gw), shutdown)
		}
		if pause(tools) < pause(gw)+shutdown {
			t.Errorf("tools preStop %s < gateway preStop %s + GATEWAY_SHUTDOWN_TIMEOUT %s: the tool service would stop under the gateway's open requests",
				pause(tools), pause(gw), shutdown)
		}
		if grace < pause(tools)+toolsShutdown {
			t.Errorf("terminationGracePeriodSeconds %s < tools preStop %s + its shutdown %s", grace, pause(tools), toolsShutdown)
		}
	})
}

// TestKubernetesSelectors checks that every selector finds the pod and every named port exists.
func TestKubernetesSelectors(t *testing.T) {
	m := kustomizeBuild(t, overlay)
	podLabels := labels.Set(m.deployment.Spec.Template.Labels)
	gw := m.container(t, "gateway")
	var metricsService *corev1.Service
	for _, s := range m.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s does not select the pod", s.Name)
		}
		for _, p := range s.Spec.Ports {
			containerPort(t, gw, p.TargetPort.String()) // only the gateway's ports; the tool service has none
		}
		if s.Labels["app.kubernetes.io/component"] == "metrics" {
			metricsService = s
		} else if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.String() != "http" {
			t.Errorf("Service %s exposes %v; want the gateway's http port alone", s.Name, s.Spec.Ports)
		}
	}
	sel := func(what string, ls interface {
		Matches(labels.Labels) bool
	}, set labels.Set) {
		if !ls.Matches(set) {
			t.Errorf("%s does not select its target", what)
		}
	}
	pdbSel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	sel("PodDisruptionBudget", pdbSel, podLabels)
	npSel, err := metav1.LabelSelectorAsSelector(&m.policy.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	sel("NetworkPolicy", npSel, podLabels)
	for _, rule := range m.policy.Spec.Ingress {
		for _, p := range rule.Ports {
			containerPort(t, gw, p.Port.String())
		}
	}
	if h := m.hpa.Spec; h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != m.deployment.Name || h.MinReplicas == nil ||
		*h.MinReplicas < 2 || m.pdb.Spec.MinAvailable.IntValue() >= int(*h.MinReplicas) {
		t.Error("HorizontalPodAutoscaler: want the Deployment as target and at least 2 replicas, more than the budget's minAvailable")
	}
	if m.deployment.Spec.Replicas != nil {
		t.Error("the Deployment sets replicas, which the HorizontalPodAutoscaler owns")
	}
	if metricsService == nil {
		t.Fatal("no metrics Service")
	}
	monSel, err := metav1.LabelSelectorAsSelector(&m.monitor.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	sel("ServiceMonitor", monSel, labels.Set(metricsService.Labels))
	for _, e := range m.monitor.Spec.Endpoints {
		if !slices.ContainsFunc(metricsService.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
			t.Errorf("ServiceMonitor endpoint port %q is not a port of Service %s", e.Port, metricsService.Name)
		}
	}
}

// TestReadmeSidecarRecipe follows the deployment guide's recipe (docs/deployment.md) for another MCP server in place
// of the tool service: a copy of the example overlay with the guide's line added to gateway.env and its patch added to
// kustomization.yaml. The gateway must then forward to that server's loopback port.
func TestReadmeSidecarRecipe(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	const marker, line = "# add to the overlay's kustomization.yaml\n", "GATEWAY_UPSTREAM_URL=http://127.0.0.1:8080/mcp"
	_, rest, ok := strings.Cut(readme, marker)
	if !ok || !strings.Contains(readme, "add `"+line+"` to\n`gateway.env`") {
		t.Fatalf("docs/deployment.md has no recipe: a block starting with %q and the line %s for gateway.env", marker, line)
	}
	patch, _, _ := strings.Cut(rest, "```")
	extra := map[string]string{}
	for _, f := range []string{"kustomization.yaml", "gateway.env", "namespace.yaml"} {
		b, err := os.ReadFile(filepath.Join(kubeDir, overlay, f))
		if err != nil {
			t.Fatal(err)
		}
		extra["overlays/recipe/"+f] = string(b)
	}
	extra["overlays/recipe/kustomization.yaml"] += "\n" + patch
	extra["overlays/recipe/gateway.env"] += line + "\n"
	m := kustomizeBuildWith(t, "overlays/recipe", extra)
	server := m.container(t, "mcp-server")
	upstream := m.env(t, m.container(t, "gateway"))["GATEWAY_UPSTREAM_URL"]
	if want := "http://127.0.0.1:8080/mcp"; upstream != want || !slices.Equal(server.Args, []string{"--host", "127.0.0.1", "--port", "8080"}) {
		t.Errorf("recipe: GATEWAY_UPSTREAM_URL=%s and server args %q, want %s and a loopback bind on its port", upstream, server.Args, want)
	}
	if len(m.deployment.Spec.Template.Spec.Containers) != 2 {
		t.Errorf("recipe: got %d containers, want the gateway and the server", len(m.deployment.Spec.Template.Spec.Containers))
	}
}
