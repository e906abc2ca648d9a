package deploy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/mcp-gateway/gateway/proxy/config"
)

// TestComposeRedisProfile checks the redis profile: a Redis alone on an internal network with the gateway, hardened
// like our services, publishing nothing and keeping nothing on disk; the gateway reads GATEWAY_REDIS_URL from .env
// (empty by default, so the prod profile alone is as before), and its value for the profile's service is one the
// gateway accepts.
func TestComposeRedisProfile(t *testing.T) {
	c, _ := loadCompose(t, envExample(t))
	r, ok := c.Services["redis"]
	if !ok {
		t.Fatal("no redis service")
	}
	if !slices.Equal(r.Profiles, []string{"redis"}) {
		t.Errorf("redis profiles: got %v, want [redis]", r.Profiles)
	}
	if len(r.Ports) > 0 || r.NetworkMode != "" || !slices.Equal(r.Networks, []string{"state"}) {
		t.Errorf("redis: ports %v, network_mode %q, networks %v; want no port, the state network alone", r.Ports, r.NetworkMode, r.Networks)
	}
	if !c.Networks["state"].Internal {
		t.Error("the state network is not internal")
	}
	for name, s := range c.Services {
		if slices.Contains(s.Networks, "state") && name != "redis" && name != "gateway" {
			t.Errorf("service %s is on the state network", name)
		}
	}
	gw := c.Services["gateway"]
	if !slices.Contains(gw.Networks, "state") {
		t.Error("the gateway is not on the state network")
	}
	if r.User == "" || r.User == "0" || !r.ReadOnly || !slices.Equal(r.CapDrop, []string{"ALL"}) || !slices.Contains(r.SecurityOpt, "no-new-privileges:true") {
		t.Error("redis: want a non-root user, read_only, cap_drop ALL and no-new-privileges")
	}
	cmd := strings.Join(r.Command, " ")
	for _, want := range []string{"--save  ", "--appendonly no", "--maxmemory-policy noeviction"} {
		if !strings.Contains(cmd+" ", want) {
			t.Errorf("redis command %q: want %q (nothing on disk; a used state is never evicted)", cmd, strings.TrimSpace(want))
		}
	}
	if r.Healthcheck == nil || r.Restart != "unless-stopped" {
		t.Error("redis: want a health check and restart unless-stopped")
	}
	if got := gw.Environment["GATEWAY_REDIS_URL"]; got != "" {
		t.Errorf("gateway GATEWAY_REDIS_URL with .env.example as it is: got %q, want empty (in memory)", got)
	}
	env := envExample(t)
	env["GATEWAY_REDIS_URL"] = "redis://redis:6379"
	c, _ = loadCompose(t, env)
	u := c.Services["gateway"].Environment["GATEWAY_REDIS_URL"]
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "GATEWAY_REDIS_URL": u})
	if err != nil || cfg.RedisAddr() != "redis:6379" {
		t.Errorf("GATEWAY_REDIS_URL=%q from .env: got %v, %v; want the redis service", u, cfg, err)
	}
}

// TestKubernetesRedisComponent renders the example overlay with the redis component and a Secret as the operator
// would create it: the gateway reads GATEWAY_REDIS_URL from that Secret (and accepts it), the tool service does not
// get it, and the NetworkPolicy lets the pod reach Redis's ports. Without the component nothing mentions Redis.
func TestKubernetesRedisComponent(t *testing.T) {
	const url = "rediss://:s3cret@redis.example:6380/2"
	m := kustomizeBuildWith(t, "overlays/redis-test", map[string]string{
		"overlays/redis-test/kustomization.yaml": `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: mcp
resources: [../example]
components: [../../components/redis]
secretGenerator:
  - name: mcp-gateway-redis
    literals: ["url=` + url + `"]
`,
	})
	gwEnv := m.env(t, m.container(t, "gateway"))
	if gwEnv["GATEWAY_REDIS_URL"] != url {
		t.Errorf("gateway GATEWAY_REDIS_URL: got %q, want the Secret's %q", gwEnv["GATEWAY_REDIS_URL"], url)
	}
	checkVarsRead(t, "container gateway", "gateway", mapsKeys(gwEnv))
	if _, ok := m.env(t, m.container(t, "tools"))["GATEWAY_REDIS_URL"]; ok {
		t.Error("the tool service gets GATEWAY_REDIS_URL")
	}
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "GATEWAY_REDIS_URL": gwEnv["GATEWAY_REDIS_URL"]})
	if err != nil || cfg.RedisAddr() != "redis.example:6380" {
		t.Errorf("the gateway on the Secret's URL: got %v, want it accepted", err)
	}
	ports := map[int32]bool{}
	for _, rule := range m.policy.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Protocol != nil && *p.Protocol == corev1.ProtocolTCP && p.Port != nil {
				ports[p.Port.IntVal] = true
			}
		}
	}
	if !ports[6379] || !ports[6380] || !ports[443] {
		t.Errorf("NetworkPolicy egress TCP ports: got %v, want 443 kept and 6379, 6380 added", ports)
	}

	plain := kustomizeBuild(t, overlay)
	if _, ok := plain.env(t, plain.container(t, "gateway"))["GATEWAY_REDIS_URL"]; ok {
		t.Error("without the component, the gateway gets GATEWAY_REDIS_URL")
	}
}
