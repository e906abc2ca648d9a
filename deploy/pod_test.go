package deploy

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/mcp-gateway/gateway/proxy/config"
)

// The checks in this file hold for every pod the repository renders: the kustomize overlays and the Helm chart with
// each of its tested values files. upstream is the container the gateway forwards to (the tool service or the user's
// MCP server), upstreamShutdown how long it drains after SIGTERM (0 when unknown).

// checkPod checks the pod's security, probes, ports, termination and spreading.
func checkPod(t *testing.T, m *manifests, upstream *corev1.Container, upstreamShutdown time.Duration) {
	t.Helper()
	pod := m.deployment.Spec.Template.Spec
	gw := m.container(t, "gateway")
	gwEnv := m.env(t, gw)
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: Service variables such as GATEWAY_PORT could reach the binaries")
	}
	t.Run("security", func(t *testing.T) { checkSecurity(t, pod) })
	t.Run("probes and ports", func(t *testing.T) { checkProbes(t, m, gw, gwEnv) })
	t.Run("termination", func(t *testing.T) {
		shutdown := duration(t, "GATEWAY_SHUTDOWN_TIMEOUT", cmpOr(gwEnv["GATEWAY_SHUTDOWN_TIMEOUT"], gatewayVars()["GATEWAY_SHUTDOWN_TIMEOUT"]))
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		if grace < preStop(gw)+shutdown {
			t.Errorf("terminationGracePeriodSeconds %s < gateway preStop %s + GATEWAY_SHUTDOWN_TIMEOUT %s", grace, preStop(gw), shutdown)
		}
		if preStop(upstream) < preStop(gw)+shutdown {
			t.Errorf("%s preStop %s < gateway preStop %s + GATEWAY_SHUTDOWN_TIMEOUT %s: the upstream would stop under the gateway's open requests",
				upstream.Name, preStop(upstream), preStop(gw), shutdown)
		}
		if grace < preStop(upstream)+upstreamShutdown {
			t.Errorf("terminationGracePeriodSeconds %s < %s preStop %s + its shutdown %s", grace, upstream.Name, preStop(upstream), upstreamShutdown)
		}
	})
	t.Run("spread over nodes", func(t *testing.T) { checkSpread(t, m) })
}

// preStop is the pause of c's preStop sleep, 0 without one.
func preStop(c *corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// checkSecurity checks what the restricted Pod Security Standard and the issue ask of the pod and every container.
func checkSecurity(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
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
}

// checkProbes checks the gateway's probes against its listener, and its metrics port against the annotations.
func checkProbes(t *testing.T, m *manifests, gw *corev1.Container, gwEnv map[string]string) {
	t.Helper()
	listen := port(t, cmpOr(gwEnv["GATEWAY_LISTEN_ADDR"], defaultAddrs["GATEWAY_LISTEN_ADDR"]))
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
	metrics := gwEnv["GATEWAY_METRICS_ADDR"]
	host, mport, err := net.SplitHostPort(metrics)
	if err != nil || config.IsLoopbackHost(host) {
		t.Errorf("GATEWAY_METRICS_ADDR=%q: want an address beyond loopback, or Prometheus cannot scrape the pod", metrics)
		return
	}
	ann := m.deployment.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != mport || containerPort(t, gw, "metrics") != mport {
		t.Errorf("metrics: annotations %v and container port metrics=%s, want both to be GATEWAY_METRICS_ADDR's port %s",
			ann, containerPort(t, gw, "metrics"), mport)
	}
}

// checkSpread checks that the scheduler is asked to put the replicas on different nodes: a budget of minAvailable 1
// protects nothing while every replica sits on the node being drained. ScheduleAnyway, so that a one-node cluster still
// runs them all.
func checkSpread(t *testing.T, m *manifests) {
	t.Helper()
	podLabels := labels.Set(m.deployment.Spec.Template.Labels)
	for _, c := range m.deployment.Spec.Template.Spec.TopologySpreadConstraints {
		if c.TopologyKey != "kubernetes.io/hostname" {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil || c.LabelSelector == nil || !sel.Matches(podLabels) {
			t.Errorf("topology spread over nodes: selector %v does not select the pod (labels %v)", c.LabelSelector, podLabels)
		}
		if c.MaxSkew != 1 || c.WhenUnsatisfiable != corev1.ScheduleAnyway {
			t.Errorf("topology spread over nodes: maxSkew %d, whenUnsatisfiable %s; want 1 and ScheduleAnyway", c.MaxSkew, c.WhenUnsatisfiable)
		}
		return
	}
	t.Error("no topology spread constraint over kubernetes.io/hostname: every replica may land on one node")
}

// peer is a destination of the pod's traffic: a pod (with its namespace's labels) or an address outside the cluster.
type peer struct {
	name      string
	nsLabels  labels.Set
	podLabels labels.Set
	ip        net.IP
}

// egressAllows evaluates the policy's egress rules as a NetworkPolicy implementation does, for a connection to dst on
// protocol and port number. An ipBlock is taken to match addresses outside the cluster only.
func egressAllows(t *testing.T, np *networkingv1.NetworkPolicy, dst peer, protocol corev1.Protocol, port int) bool {
	t.Helper()
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		return true
	}
	for _, rule := range np.Spec.Egress {
		if peerMatches(t, np, rule.To, dst) && portMatches(rule.Ports, protocol, port) {
			return true
		}
	}
	return false
}

func peerMatches(t *testing.T, np *networkingv1.NetworkPolicy, to []networkingv1.NetworkPolicyPeer, dst peer) bool {
	t.Helper()
	if len(to) == 0 {
		return true
	}
	for _, p := range to {
		if p.IPBlock != nil {
			_, cidr, err := net.ParseCIDR(p.IPBlock.CIDR)
			if err != nil {
				t.Fatalf("NetworkPolicy ipBlock %q: %v", p.IPBlock.CIDR, err)
			}
			if dst.ip != nil && cidr.Contains(dst.ip) && !slices.ContainsFunc(p.IPBlock.Except, func(e string) bool {
				_, ex, err := net.ParseCIDR(e)
				return err == nil && ex.Contains(dst.ip)
			}) {
				return true
			}
			continue
		}
		if dst.ip != nil {
			continue // pod and namespace selectors match pods only
		}
		nsOK := true
		if p.NamespaceSelector != nil {
			nsOK = selects(t, p.NamespaceSelector, dst.nsLabels)
		} else {
			nsOK = dst.nsLabels["kubernetes.io/metadata.name"] == np.Namespace
		}
		podOK := p.PodSelector == nil || selects(t, p.PodSelector, dst.podLabels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

func selects(t *testing.T, ls *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatal(err)
	}
	return sel.Matches(set)
}

func portMatches(ports []networkingv1.NetworkPolicyPort, protocol corev1.Protocol, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != protocol {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.IntValue() == port || (p.EndPort != nil && p.Port.IntValue() <= port && port <= int(*p.EndPort)) {
			return true
		}
	}
	return false
}

// dnsServers are the cluster DNS set-ups the pod must reach: CoreDNS/kube-dns, NodeLocal DNSCache, OpenShift's DNS.
var dnsServers = []struct {
	peer peer
	port int
}{
	{peer{name: "kube-dns (CoreDNS) in kube-system", nsLabels: labels.Set{"kubernetes.io/metadata.name": "kube-system"},
		podLabels: labels.Set{"k8s-app": "kube-dns"}}, 53},
	{peer{name: "NodeLocal DNSCache 169.254.20.10", ip: net.ParseIP("169.254.20.10")}, 53},
	{peer{name: "OpenShift DNS in openshift-dns", nsLabels: labels.Set{"kubernetes.io/metadata.name": "openshift-dns"},
		podLabels: labels.Set{"dns.operator.openshift.io/daemonset-dns": "default"}}, 5353},
}

// checkEgress checks that the NetworkPolicy lets the pod reach each DNS set-up (UDP and TCP) and the authorization
// server the gateway is configured with, on its port; an address outside the cluster stands for the issuer.
func checkEgress(t *testing.T, m *manifests, gwEnv map[string]string) {
	t.Helper()
	np := m.policy
	if np == nil {
		t.Fatal("no NetworkPolicy")
	}
	for _, d := range dnsServers {
		for _, proto := range []corev1.Protocol{corev1.ProtocolUDP, corev1.ProtocolTCP} {
			if !egressAllows(t, np, d.peer, proto, d.port) {
				t.Errorf("NetworkPolicy: no egress to %s on %s %d", d.peer.name, proto, d.port)
			}
		}
	}
	issuer := issuerURL(t, gwEnv)
	issuerPort := 443
	if p := issuer.Port(); p != "" {
		issuerPort = atoi(t, p)
	} else if issuer.Scheme == "http" {
		issuerPort = 80
	}
	external := peer{name: "the issuer " + issuer.String(), ip: net.ParseIP("203.0.113.10")}
	if !egressAllows(t, np, external, corev1.ProtocolTCP, issuerPort) {
		t.Errorf("NetworkPolicy: no egress to %s on TCP %d: the pod would stay not ready (keys not loaded)", issuer, issuerPort)
	}
	if egressAllows(t, np, external, corev1.ProtocolTCP, 25) {
		t.Error("NetworkPolicy: egress to any port outside the cluster (TCP 25 allowed)")
	}
}

// issuerURL is the authorization server the gateway's environment names: GATEWAY_ISSUER_URL, else the AuthKit domain.
func issuerURL(t *testing.T, gwEnv map[string]string) *url.URL {
	t.Helper()
	raw := gwEnv["GATEWAY_ISSUER_URL"]
	if raw == "" {
		sub := gwEnv["MCP_USE_OAUTH_WORKOS_SUBDOMAIN"]
		switch {
		case sub == "":
			t.Fatal("the gateway's environment names no issuer")
		case strings.HasPrefix(sub, "https://"):
			raw = sub
		case net.ParseIP(sub) == nil && !strings.Contains(sub, "."):
			raw = "https://" + sub + ".authkit.app"
		default:
			raw = "https://" + sub
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("issuer %q: %v", raw, err)
	}
	return u
}

// checkSelectors checks that every selector finds the pod, every named port exists, and the replica counts leave the
// budget room to evict.
func checkSelectors(t *testing.T, m *manifests) {
	t.Helper()
	podLabels := labels.Set(m.deployment.Spec.Template.Labels)
	gw := m.container(t, "gateway")
	for _, s := range m.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s does not select the pod", s.Name)
		}
		for _, p := range s.Spec.Ports {
			containerPort(t, gw, p.TargetPort.String()) // only the gateway's ports; the upstream has none
		}
		if s.Labels["app.kubernetes.io/component"] != "metrics" && (len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.String() != "http") {
			t.Errorf("Service %s exposes %v; want the gateway's http port alone", s.Name, s.Spec.Ports)
		}
	}
	if !selects(t, m.pdb.Spec.Selector, podLabels) {
		t.Error("PodDisruptionBudget does not select the pod")
	}
	if !selects(t, &m.policy.Spec.PodSelector, podLabels) {
		t.Error("NetworkPolicy does not select the pod")
	}
	for _, rule := range m.policy.Spec.Ingress {
		for _, p := range rule.Ports {
			containerPort(t, gw, p.Port.String())
		}
	}
	if m.hpa != nil {
		if h := m.hpa.Spec; h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != m.deployment.Name || h.MinReplicas == nil ||
			*h.MinReplicas < 2 || m.pdb.Spec.MinAvailable.IntValue() >= int(*h.MinReplicas) {
			t.Error("HorizontalPodAutoscaler: want the Deployment as target and at least 2 replicas, more than the budget's minAvailable")
		}
		if m.deployment.Spec.Replicas != nil {
			t.Error("the Deployment sets replicas, which the HorizontalPodAutoscaler owns")
		}
	}
	if m.monitor != nil {
		checkServiceMonitor(t, m)
	}
}
