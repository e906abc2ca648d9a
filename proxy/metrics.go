package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// Metrics are the gateway's Prometheus collectors. Every label has a bounded set of values: route names, methods,
// status codes and the fixed token.Reason values; never a path, subject or token.
type Metrics struct {
	Requests       *prometheus.CounterVec
	Duration       *prometheus.HistogramVec
	AuthFailures   *prometheus.CounterVec
	JWKSFetches    *prometheus.CounterVec
	KeysLoaded     prometheus.Gauge
	UpstreamErrors *prometheus.CounterVec
	OpenStreams    prometheus.Gauge
	// PolicyDecisions counts the decisions on MCP messages by outcome and rule (the policy's rule names and "default").
	PolicyDecisions *prometheus.CounterVec
	// PolicyReloads counts policy reloads by result (ok, error).
	PolicyReloads *prometheus.CounterVec
	// AuditDropped counts the audit events dropped because the audit log could not keep up.
	AuditDropped prometheus.Counter
	// Limited counts the requests refused over a limit, by limit (user_rate, user_streams, anonymous_rate, tool_rate).
	Limited *prometheus.CounterVec
	// RedisUp and RedisErrors exist with GATEWAY_REDIS_URL only (see redis.go).
	RedisUp     prometheus.Gauge
	RedisErrors *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_gateway_requests_total", Help: "Requests answered, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcp_gateway_request_duration_seconds",
			Help:    "Time to answer a request (to the end of the response, so streams count their whole life), by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_gateway_auth_failures_total", Help: "Requests refused, by reason.",
		}, []string{"reason"}),
		JWKSFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_gateway_jwks_fetches_total", Help: "Key set fetches, by result (ok, error).",
		}, []string{"result"}),
		KeysLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcp_gateway_jwks_loaded", Help: "1 when the authorization server's key set is loaded.",
		}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_gateway_upstream_errors_total", Help: "Requests the upstream could not answer, by kind (unreachable, timeout, canceled, body_too_large, body_timeout).",
		}, []string{"kind"}),
		OpenStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcp_gateway_open_streams", Help: "Server-sent event streams open through the gateway.",
		}),
		PolicyDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_gateway_policy_decisions_total", Help: "Decisions on MCP messages that name a tool, prompt or resource, by outcome (allow, deny, step_up) and the rule that decided (or default).",
		}, []string{"outcome", "rule"}),
		PolicyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_gateway_policy_reloads_total", Help: "Policy reloads, by result (ok; error: the previous policy stays in force).",
		}, []string{"result"}),
		AuditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcp_gateway_audit_dropped_total", Help: "Audit events dropped because the audit log could not keep up.",
		}),
		Limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_gateway_limited_total", Help: "Requests refused with 429 over a limit, by limit (user_rate, user_streams, anonymous_rate, tool_rate).",
		}, []string{"limit"}),
	}
	reg.MustRegister(m.Requests, m.Duration, m.AuthFailures, m.JWKSFetches, m.KeysLoaded, m.UpstreamErrors, m.OpenStreams,
		m.PolicyDecisions, m.PolicyReloads, m.AuditDropped, m.Limited)
	for _, l := range []string{limitUserRate, limitUserStreams, limitAnonymousRate, limitToolRate} {
		m.Limited.WithLabelValues(l)
	}
	for _, r := range []string{"ok", "error"} {
		m.PolicyReloads.WithLabelValues(r)
	}
	for _, r := range []token.Reason{token.ReasonNoToken, token.ReasonMalformed, token.ReasonSignature,
		token.ReasonUnknownKey, token.ReasonExpired, token.ReasonNotYetValid, token.ReasonIssuer, token.ReasonAudience,
		token.ReasonMissingClaim, token.ReasonInvalidClaim, token.ReasonScope, token.ReasonKeysUnavailable,
		ReasonSession, ReasonOrigin} {
		m.AuthFailures.WithLabelValues(string(r))
	}
	return m
}

// methodLabel bounds the method label.
func methodLabel(m string) string {
	switch m {
	case "GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH":
		return m
	}
	return "other"
}
