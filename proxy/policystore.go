package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// ErrNoPolicy is ReloadPolicy's error when the gateway runs without a policy (GATEWAY_POLICY_FILE unset).
var ErrNoPolicy = errors.New("no policy is configured (GATEWAY_POLICY_FILE)")

// LoadPolicy is policy.Load as a Decider: the default for Options.LoadPolicy.
func LoadPolicy(path string) (Decider, error) {
	p, err := policy.Load(path)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// policyPollInterval is how often the gateway looks at the policy file for a change.
const policyPollInterval = 2 * time.Second

// policyStore holds the policy in force and replaces it when its file changes (ReloadPolicy on SIGHUP, or the
// file's size, time or identity changing). A file that does not load leaves the policy in force, and says why. It also
// counts decisions by outcome and rule, with the rule label limited to the names of the rules in force and "default".
type policyStore struct {
	path    string
	load    func(string) (Decider, error)
	metrics *Metrics
	log     *slog.Logger

	cur atomic.Pointer[activePolicy]

	mu    sync.Mutex // one reload at a time
	stamp fileStamp  // the file as last read
}

// activePolicy is a policy in force and its decision counters.
type activePolicy struct {
	d        Decider
	counters map[string]*[3]prometheus.Counter // by rule name; allow, deny, step_up
}

// fileStamp is what the poll compares of the policy file.
type fileStamp struct {
	info os.FileInfo
	err  bool // the file could not be read
}

func (a fileStamp) same(b fileStamp) bool {
	if a.err || b.err {
		return a.err == b.err
	}
	return a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime()) && os.SameFile(a.info, b.info)
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	return fileStamp{info: fi, err: err != nil}
}

// newPolicyStore loads the policy at path: an error stops the gateway.
func newPolicyStore(path string, load func(string) (Decider, error), m *Metrics, log *slog.Logger) (*policyStore, error) {
	s := &policyStore{path: path, load: load, metrics: m, log: log}
	s.stamp = stampOf(path)
	d, err := load(path)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_POLICY_FILE: %w", err)
	}
	s.install(d)
	log.Info("policy loaded: tools, prompts and resources are decided per caller", "file", path, "rules", len(d.Rules()))
	return s, nil
}

// current returns the policy in force.
func (s *policyStore) current() Decider { return s.cur.Load().d }

// reload reads the file again and puts it in force, or keeps the policy in force and returns why not.
func (s *policyStore) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stamp = stampOf(s.path)
	d, err := s.load(s.path)
	if err != nil {
		s.metrics.PolicyReloads.WithLabelValues("error").Inc()
		s.log.Error("policy not reloaded; the previous policy stays in force", "file", s.path, "err", err)
		return fmt.Errorf("policy %s: %w", s.path, err)
	}
	s.install(d)
	s.metrics.PolicyReloads.WithLabelValues("ok").Inc()
	s.log.Info("policy reloaded", "file", s.path, "rules", len(d.Rules()))
	return nil
}

// install puts d in force with its counters, and removes the counters of rules it no longer has.
func (s *policyStore) install(d Decider) {
	vec := s.metrics.PolicyDecisions
	names := append(slices.Clone(d.Rules()), "default")
	a := &activePolicy{d: d, counters: make(map[string]*[3]prometheus.Counter, len(names))}
	for _, n := range names {
		a.counters[n] = &[3]prometheus.Counter{vec.WithLabelValues(string(policy.Allow), n),
			vec.WithLabelValues(string(policy.Deny), n), vec.WithLabelValues(string(policy.StepUp), n)}
	}
	if old := s.cur.Swap(a); old != nil {
		for n := range old.counters {
			if _, ok := a.counters[n]; !ok {
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
	a := s.cur.Load()
	c, ok := a.counters[d.Rule]
	if !ok {
		c = a.counters["default"]
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

// watch reloads the policy when its file changes, looking every interval, until ctx ends.
func (s *policyStore) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			changed := !s.stamp.same(stampOf(s.path))
			s.mu.Unlock()
			if changed {
				_ = s.reload() // logged and counted
			}
		}
	}
}
