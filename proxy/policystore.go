package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// ErrNoPolicy is ReloadPolicy's error when the gateway runs without a policy (GATEWAY_POLICY_FILE unset).
var ErrNoPolicy = errors.New("no policy is configured (GATEWAY_POLICY_FILE)")

// policyPollInterval is how often the gateway looks at the policy file for a change.
const policyPollInterval = 2 * time.Second

// policyStore is the policy in force (package policy's Store: reloaded on ReloadPolicy, SIGHUP, or a change of the
// file; a file that does not load leaves the policy in force) with what the gateway adds: the reloads logged and
// counted, and the decisions counted by outcome and rule, the rule label limited to the names of the rules in force
// and "default".
type policyStore struct {
	store   *policy.Store
	metrics *Metrics
	log     *slog.Logger

	counters atomic.Pointer[map[string]*[3]prometheus.Counter] // by rule name; allow, deny, step_up
}

// newPolicyStore loads the policy at path: an error stops the gateway.
func newPolicyStore(path string, m *Metrics, log *slog.Logger) (*policyStore, error) {
	st, err := policy.NewStore(path)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_POLICY_FILE: %w", err)
	}
	s := &policyStore{store: st, metrics: m, log: log}
	s.install(st.Policy())
	log.Info("policy loaded: tools, prompts and resources are decided per caller", "file", path, "rules", len(st.Policy().Rules()))
	return s, nil
}

// current returns the policy in force.
func (s *policyStore) current() Decider { return s.store.Policy() }

// reload reads the file again and puts it in force, or keeps the policy in force and returns why not.
func (s *policyStore) reload() error {
	err := s.store.Reload()
	s.reloaded(err)
	return err
}

// reloaded logs and counts a reload, and installs the counters of the policy now in force.
func (s *policyStore) reloaded(err error) {
	if err != nil {
		s.metrics.PolicyReloads.WithLabelValues("error").Inc()
		s.log.Error("policy not reloaded; the previous policy stays in force", "file", s.store.Path(), "err", err)
		return
	}
	p := s.store.Policy()
	s.install(p)
	s.metrics.PolicyReloads.WithLabelValues("ok").Inc()
	s.log.Info("policy reloaded", "file", s.store.Path(), "rules", len(p.Rules()))
}

// watch reloads the policy when its file changes, looking every interval, until ctx ends.
func (s *policyStore) watch(ctx context.Context, interval time.Duration) {
	s.store.Watch(ctx, interval, s.reloaded)
}

// install makes the counters of p's rules the ones in use, and removes those of rules it no longer has.
func (s *policyStore) install(p *policy.Policy) {
	vec := s.metrics.PolicyDecisions
	names := append(p.Rules(), policy.DefaultRule)
	m := make(map[string]*[3]prometheus.Counter, len(names))
	for _, n := range names {
		m[n] = &[3]prometheus.Counter{vec.WithLabelValues(string(policy.Allow), n),
			vec.WithLabelValues(string(policy.Deny), n), vec.WithLabelValues(string(policy.StepUp), n)}
	}
	if old := s.counters.Swap(&m); old != nil {
		for n := range *old {
			if _, ok := m[n]; !ok {
				for _, o := range []policy.Outcome{policy.Allow, policy.Deny, policy.StepUp} {
					vec.DeleteLabelValues(string(o), n)
				}
			}
		}
	}
}

// count counts a decision. A rule the policy in force does not name (a decision of the policy before a reload)
// counts as "default".
func (s *policyStore) count(d policy.Decision) {
	m := *s.counters.Load()
	c, ok := m[d.Rule]
	if !ok {
		c = m[policy.DefaultRule]
	}
	switch d.Outcome {
	case policy.Allow:
		c[0].Inc()
	case policy.Deny:
		c[1].Inc()
	case policy.StepUp:
		c[2].Inc()
	}
}
