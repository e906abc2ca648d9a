//go:build !nodev

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/cmd/gateway/internal/devauth"
	"github.com/mcp-gateway/gateway/proxy/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// unsignedJWT returns a compact JWT with claims and a signature that verifies nothing: explain does not verify.
func unsignedJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT","kid":"k1"}`)) + "." + enc(payload) + "." + enc([]byte("not a signature"))
}

// TestPolicyExplain runs gateway policy explain as a user would, on the development policy, and pins its output.
func TestPolicyExplain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(devPolicyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	member := unsignedJWT(t, map[string]any{"iss": "http://localhost:3002", "sub": "user_dev_member", "org_id": "org_dev_acme",
		"role": "member", "roles": []string{"member"}, "permissions": []string{"users:read"}, "scope": "offline_access", "exp": 4102444800})
	guestFile := filepath.Join(dir, "guest.json")
	if err := os.WriteFile(guestFile, []byte(`{"sub": "user_dev_guest", "scope": "offline_access", "exp": 1700000000}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GATEWAY_POLICY_FILE": path}
	var all strings.Builder
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"member calls get-workos-user (JWT)", []string{"--token", member, "--tool", "get-workos-user"}},
		{"member calls a tool only admins may", []string{"--token", "Bearer " + member, "--tool", "delete-user"}},
		{"admin (claims JSON) calls it", []string{"--token", `{"sub":"user_dev_admin","role":"admin","permissions":["users:read"]}`, "--tool", "delete-user"}},
		{"guest (claims from a file, expired) asks for get-workos-user", []string{"--token", "@" + guestFile, "--tool", "get-workos-user"}},
		{"a prompt no rule covers, with --file", []string{"--file", path, "--token", "@" + guestFile, "--prompt", "summarize"}},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"policy", "explain"}, tc.args...)
		if err := run(context.Background(), args, env, &out, &errOut); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, errOut.String())
		}
		all.WriteString("$ gateway policy explain  # " + tc.name + "\n" + strings.ReplaceAll(out.String(), path, "policy.yaml") + "\n")
	}
	golden(t, "policy-explain.golden", all.String())
}

func TestPolicyExplainErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(devPolicyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - name: r\n    tools: ['*']\n    when: mcp.arguments.id == 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	claims := `{"sub":"u"}`
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", []string{"policy"}, nil, "missing command"},
		{"unknown command", []string{"policy", "check"}, nil, `unknown command "check"`},
		{"no token", []string{"policy", "explain", "--file", good, "--tool", "x"}, nil, "--token is required"},
		{"no name", []string{"policy", "explain", "--file", good, "--token", claims}, nil, "exactly one of --tool, --prompt or --resource"},
		{"two names", []string{"policy", "explain", "--file", good, "--token", claims, "--tool", "x", "--prompt", "y"}, nil, "exactly one of"},
		{"a stray argument", []string{"policy", "explain", "--file", good, "--token", claims, "x"}, nil, "unexpected arguments"},
		{"no policy", []string{"policy", "explain", "--token", claims, "--tool", "x"}, nil, "set --file or GATEWAY_POLICY_FILE"},
		{"a token that is neither", []string{"policy", "explain", "--token", "abc", "--tool", "x"}, map[string]string{"GATEWAY_POLICY_FILE": good}, "neither a JWT"},
		{"an encrypted token", []string{"policy", "explain", "--token", "a.b.c.d.e", "--tool", "x"}, map[string]string{"GATEWAY_POLICY_FILE": good}, "JWE"},
		{"a payload that is not JSON", []string{"policy", "explain", "--token", "a.bm90IGpzb24.c", "--tool", "x"}, map[string]string{"GATEWAY_POLICY_FILE": good}, "not a JSON object"},
		{"a policy that does not load", []string{"policy", "explain", "--file", bad, "--token", claims, "--tool", "x"}, nil,
			bad + ":4:14: rule r: when: undefined field 'arguments'"},
		{"flags before policy", []string{"--check", "policy", "explain"}, nil, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, tc.env, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDevPolicy checks that development mode writes the example policy for the gateway to read, unless
// GATEWAY_POLICY_FILE names one, and that the example says what the README and docs/policy.md promise.
func TestDevPolicy(t *testing.T) {
	t.Parallel()
	genv := map[string]string{}
	example, remove, err := devPolicy(genv)
	if err != nil || !example {
		t.Fatalf("devPolicy: %v, example %t", err, example)
	}
	path := genv["GATEWAY_POLICY_FILE"]
	p, err := policy.Load(path)
	if err != nil {
		t.Fatalf("the example policy does not load: %v", err)
	}
	remove()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the example policy's file is left after remove: %v", err)
	}
	tools := []string{"get-user-info", "get-user-permissions", "get-workos-user"}
	for _, u := range devauth.DemoUsers() {
		claims := map[string]any{"sub": u.ID, "org_id": u.OrgID, "roles": toAny(u.Roles), "permissions": toAny(u.Permissions)}
		f := policy.FactsFromClaims(claims)
		var allowed []string
		for _, tool := range tools {
			if d := p.Decide(&f, policy.Tool, tool); d.Outcome == policy.Allow {
				allowed = append(allowed, tool)
			}
		}
		want := map[string][]string{"user_dev_admin": tools, "user_dev_member": tools, "user_dev_guest": tools[:2]}[u.ID]
		if !slices.Equal(allowed, want) {
			t.Errorf("%s may use %q, want %q", u.ID, allowed, want)
		}
	}

	mine := map[string]string{"GATEWAY_POLICY_FILE": "/etc/gateway/policy.yaml"}
	if example, remove, err := devPolicy(mine); err != nil || example || mine["GATEWAY_POLICY_FILE"] != "/etc/gateway/policy.yaml" {
		t.Errorf("devPolicy with GATEWAY_POLICY_FILE set: example %t, %v, file %q", example, err, mine["GATEWAY_POLICY_FILE"])
	} else {
		remove()
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, e := range s {
		out[i] = e
	}
	return out
}

// TestPolicyDocs checks that docs/policy.md shows the development policy as it is, and explain's output as it is.
func TestPolicyDocs(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "\n```yaml\n"+devPolicyYAML+"```\n") {
		t.Error("docs/policy.md does not show cmd/gateway/dev-policy.yaml as it is, in a yaml block")
	}
	_, example, ok := strings.Cut(string(md), "$ gateway policy explain --token \"$TOKEN\" --tool delete-user\n")
	example, _, _ = strings.Cut(example, "```\n")
	out, err := os.ReadFile("testdata/policy-explain.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !ok || !strings.Contains(string(out), example) {
		t.Errorf("docs/policy.md's explain example is not what explain prints (testdata/policy-explain.golden):\n%s", example)
	}
}
