package policy

import (
	"os"
	"strings"
	"testing"
)

// TestDocsExamplesLoad checks that every YAML block of docs/policy.md is a policy that loads.
func TestDocsExamplesLoad(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	for _, part := range strings.Split(string(md), "\n```yaml\n")[1:] {
		block, _, ok := strings.Cut(part, "\n```\n")
		if !ok {
			t.Fatalf("docs/policy.md: an unterminated yaml block:\n%s", part)
		}
		blocks++
		if _, err := Parse([]byte(block), "docs/policy.md"); err != nil {
			t.Errorf("docs/policy.md: a yaml block does not load: %v\n%s", err, block)
		}
	}
	if blocks < 5 {
		t.Errorf("docs/policy.md has %d yaml blocks, want at least 5 (the shape, conditions, the development policy, three examples)", blocks)
	}
}
