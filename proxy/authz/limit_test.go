package authz

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// exactLimits grants every tool by a rule that names it exactly, each with its own budget.
type exactLimits struct{}

var everyToolLimited = &policy.Limit{PerSecond: 1, Burst: 1, Rate: "1/s"}

func (exactLimits) Decide(_ *policy.Facts, kind policy.Kind, name string) policy.Decision {
	return policy.Decision{Outcome: policy.Allow, Rule: "each", Limit: everyToolLimited, LimitKey: name}
}

// TestLimitTakesAtMostMaxLimitTakes: a batch of calls of a thousand tools, each with a budget of its own, asks the
// limiter for MaxLimitTakes of them; the calls beyond are answered as over their limit, and one refused budget is not
// asked again.
func TestLimitTakesAtMostMaxLimitTakes(t *testing.T) {
	t.Parallel()
	calls := make([]string, 1000)
	for i := range calls {
		calls[i] = `{"jsonrpc":"2.0","id":` + strconv.Itoa(i+1) + `,"method":"tools/call","params":{"name":"t` + strconv.Itoa(i%500) + `"}}`
	}
	ex := listExchange(t, "["+strings.Join(calls, ",")+"]", "")
	ex.policy = exactLimits{}
	for i := range ex.msgs {
		ex.decide(&ex.msgs[i])
	}
	asks := map[string]int{}
	longest := ex.Limit(func(rule, budget string, l *policy.Limit) (bool, time.Duration) {
		asks[budget]++
		return budget != "t1", 5 * time.Second
	})
	total := 0
	for b, n := range asks {
		total += n
		if n > 1 {
			t.Errorf("budget %s asked %d times in one POST", b, n)
		}
	}
	if total != MaxLimitTakes || longest != 5*time.Second {
		t.Errorf("asked %d budgets, longest wait %s; want %d, 5s", total, longest, MaxLimitTakes)
	}
	limited := 0
	for _, m := range ex.msgs {
		if m.retry > 0 {
			limited++
		}
	}
	// t1 twice (refused, then not asked again), and every call after the first MaxLimitTakes budgets.
	if want := 2 + (1000 - MaxLimitTakes - 1); limited != want {
		t.Errorf("calls answered as over their limit: got %d, want %d", limited, want)
	}
}
