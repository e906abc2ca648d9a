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
	"net/url"
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
	ownUpstream    = "overlays/own-upstream"
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
	secretValues := map[string]string{}
	for _, d := range []string{overlay, dir} {
		example := filepath.Join(kubeDir, d, "secrets.env.example")
		if _, err := os.Stat(example); err != nil {
			example = filepath.Join(kubeDir, secretsExample)
		}
		_, order := readEnvFile(t, example)
		var secrets strings.Builder
		for _, k := range order {
			v := "sk_test_wiring"
			if strings.HasSuffix(k, "_SECRET") {
				v = randomSecret(t)
			}
			secretValues[k] = v
			fmt.Fprintf(&secrets, "%s=%s\n", k, v)
		}
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

	m := decodeObjects(t, "kustomize build "+dir, out)
	m.secretValues = secretValues
	return m
}

// decodeObjects decodes every object of a multi-document YAML stream strictly into its Kubernetes API type: an unknown
// kind, an unknown field or a duplicate field fails the test. what names the stream's source in failures.
func decodeObjects(t *testing.T, what string, out []byte) *manifests {
	t.Helper()
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
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
		if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
			continue
		}
		obj, gvk, err := codec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s, object %d: %v\n%s", what, i, err, doc)
		}
		m.objects = append(m.objects, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			if m.deployment != nil {
				t.Fatalf("%s: two Deployments", what)
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
			t.Errorf("%s: unexpected %s", what, gvk)
		}
	}
	if m.deployment == nil {
		t.Fatalf("%s: no Deployment", what)
	}
	return m
}

// isOnlyComments reports whether a YAML document holds comments alone (helm template writes a "# Source:" line even for
// a template that renders nothing).
func isOnlyComments(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		if l = strings.TrimSpace(l); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
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

// TestKubernetesDecodesStrictly builds the base and the two overlays and decodes every object strictly.
func TestKubernetesDecodesStrictly(t *testing.T) {
	for _, dir := range []string{"base", overlay, ownUpstream} {
		t.Run(dir, func(t *testing.T) {
			m := kustomizeBuild(t, dir)
			configMaps := 2
			if dir == ownUpstream {
				configMaps = 1 // the tool service's has no reader left
			}
			if m.pdb == nil || m.hpa == nil || m.policy == nil || len(m.services) != 2 || len(m.configMaps) != configMaps {
				t.Errorf("kustomize build %s: want a Deployment, two Services, %d ConfigMaps, a PodDisruptionBudget, a HorizontalPodAutoscaler and a NetworkPolicy", dir, configMaps)
			}
			if dir != "base" && len(m.secrets) != 1 {
				t.Errorf("kustomize build %s: want the Secret", dir)
			}
		})
	}
}

// TestKubernetesServiceMonitor checks that the example overlay applies to a cluster without the Prometheus Operator
// (nothing but built-in kinds), and that the ServiceMonitor component, where it is added, carries the label
// kube-prometheus-stack selects by and finds the metrics Service.
func TestKubernetesServiceMonitor(t *testing.T) {
	for _, dir := range []string{overlay, ownUpstream} {
		for _, obj := range kustomizeBuild(t, dir).objects {
			if gvk := obj.GetObjectKind().GroupVersionKind(); !builtinGroups[gvk.Group] {
				t.Errorf("%s holds a %s, which a cluster without its CustomResourceDefinition refuses", dir, gvk)
			}
		}
	}
	m := withServiceMonitor(t)
	if m.monitor == nil {
		t.Fatal("the servicemonitor component added no ServiceMonitor")
	}
	if got := m.monitor.Labels["release"]; got != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor label release=%q, want kube-prometheus-stack (what that chart's Prometheus selects by default)", got)
	}
	checkServiceMonitor(t, m)
}

// builtinGroups are the API groups of the kinds every cluster knows, of those the manifests use.
var builtinGroups = map[string]bool{"": true, "apps": true, "policy": true, "autoscaling": true, "networking.k8s.io": true}

// withServiceMonitor builds a copy of the example overlay with the servicemonitor component added, as its comment says.
func withServiceMonitor(t *testing.T) *manifests {
	t.Helper()
	extra := map[string]string{}
	for _, f := range []string{"kustomization.yaml", "gateway.env", "namespace.yaml"} {
		b, err := os.ReadFile(filepath.Join(kubeDir, overlay, f))
		if err != nil {
			t.Fatal(err)
		}
		extra["overlays/monitored/"+f] = string(b)
	}
	k := extra["overlays/monitored/kustomization.yaml"]
	const off = "# components:\n#   - ../../components/servicemonitor\n"
	if !strings.Contains(k, off) {
		t.Fatalf("%s/kustomization.yaml has no commented-out servicemonitor component to turn on", overlay)
	}
	extra["overlays/monitored/kustomization.yaml"] = strings.Replace(k, off, "components:\n  - ../../components/servicemonitor\n", 1)
	return kustomizeBuildWith(t, "overlays/monitored", extra)
}

// checkServiceMonitor checks that the ServiceMonitor selects the metrics Service and scrapes a port it has.
func checkServiceMonitor(t *testing.T, m *manifests) {
	t.Helper()
	var metricsService *corev1.Service
	for _, s := range m.services {
		if s.Labels["app.kubernetes.io/component"] == "metrics" {
			metricsService = s
		}
	}
	if metricsService == nil {
		t.Fatal("no metrics Service")
	}
	monSel, err := metav1.LabelSelectorAsSelector(&m.monitor.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !monSel.Matches(labels.Set(metricsService.Labels)) {
		t.Error("ServiceMonitor does not select the metrics Service")
	}
	for _, e := range m.monitor.Spec.Endpoints {
		if !slices.ContainsFunc(metricsService.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
			t.Errorf("ServiceMonitor endpoint port %q is not a port of Service %s", e.Port, metricsService.Name)
		}
	}
}

// TestKubernetesPod checks the example overlay's pod against what the issue asks and what the binaries need.
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
		keys, _ := readEnvFile(t, filepath.Join(kubeDir, secretsExample))
		for name, s := range m.secrets {
			if got, want := len(s.Data), len(keys); got != want {
				t.Errorf("Secret %s has %d keys, want the %d of %s", name, got, want, secretsExample)
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
		if tools.LivenessProbe == nil || tools.LivenessProbe.Exec == nil || !slices.Equal(tools.LivenessProbe.Exec.Command, []string{"tools", "--healthcheck"}) {
			t.Error("tools liveness probe: want exec tools --healthcheck")
		}
	})
	checkPod(t, m, tools, toolsShutdown)
	checkEgress(t, m, gwEnv)
}

// TestKubernetesSelectors checks that every selector finds the pod and every named port exists.
func TestKubernetesSelectors(t *testing.T) {
	checkSelectors(t, withServiceMonitor(t))
}

// TestKubernetesOwnUpstream checks the overlay that puts the gateway in front of the user's MCP server: the tool service
// is gone, the server is the pod's second container, listening on the pod's loopback at GATEWAY_UPSTREAM_URL's port,
// and the pod keeps every property the example's has.
func TestKubernetesOwnUpstream(t *testing.T) {
	m := kustomizeBuild(t, ownUpstream)
	pod := m.deployment.Spec.Template.Spec
	if len(pod.Containers) != 2 || slices.ContainsFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == "tools" }) {
		t.Fatalf("the pod has containers %v; want gateway and mcp-server", containerNames(pod.Containers))
	}
	gw, server := m.container(t, "gateway"), m.container(t, "mcp-server")
	gwEnv := m.env(t, gw)
	checkVarsRead(t, "container gateway", "gateway", mapsKeys(gwEnv))
	if server.Image != "registry.example.com/my-mcp-server:1.2.3" {
		t.Errorf("mcp-server image %s, want the overlay's registry.example.com/my-mcp-server:1.2.3", server.Image)
	}
	checkLoopbackUpstream(t, gwEnv["GATEWAY_UPSTREAM_URL"], server)
	for _, e := range server.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("mcp-server gets secret %s: a server on loopback needs none of the gateway's", e.Name)
		}
	}
	checkPod(t, m, server, 0)
	checkEgress(t, m, gwEnv)
	checkSelectors(t, m)
}

// checkLoopbackUpstream checks that upstream (GATEWAY_UPSTREAM_URL) is on the pod's loopback, and that the server
// container is told to listen there: its arguments or environment name 127.0.0.1 and the URL's port, and it declares no
// container port.
func checkLoopbackUpstream(t *testing.T, upstream string, server *corev1.Container) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme != "http" || !config.IsLoopbackHost(u.Hostname()) || u.Port() == "" {
		t.Fatalf("GATEWAY_UPSTREAM_URL=%q: want http://127.0.0.1:<port>/…, the pod's loopback", upstream)
	}
	said := strings.Join(append(slices.Clone(server.Command), server.Args...), " ")
	for _, e := range server.Env {
		said += " " + e.Name + "=" + e.Value
	}
	if !strings.Contains(said, "127.0.0.1") || !strings.Contains(said, u.Port()) {
		t.Errorf("container %s: command, args and env %q do not bind 127.0.0.1 and port %s", server.Name, said, u.Port())
	}
	if len(server.Ports) > 0 {
		t.Errorf("container %s declares ports %v; on loopback it needs none", server.Name, server.Ports)
	}
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}
