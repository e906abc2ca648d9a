package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mcp-gateway/gateway/proxy/clientaddr"
	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/policy"
	"github.com/mcp-gateway/gateway/proxy/ratelimit"
)

// The limits, by the name mcp_gateway_limited_total and the log give them.
const (
	limitUserRate      = "user_rate"      // GATEWAY_RATE_LIMIT_USER
	limitUserStreams   = "user_streams"   // GATEWAY_MAX_STREAMS_USER
	limitAnonymousRate = "anonymous_rate" // GATEWAY_RATE_LIMIT_ANONYMOUS
	limitToolRate      = "tool_rate"      // a policy rule's limit on calls of each tool it grants
)

const (
	// limitKeys is how many users or addresses a rate limit holds a bucket for in memory (ratelimit.Memory).
	limitKeys = 100_000
	// limitLogInterval is how often each limit logs that it refused requests.
	limitLogInterval = 10 * time.Second
	// streamRetryAfter is the Retry-After of a stream refused over GATEWAY_MAX_STREAMS_USER: when one of the user's
	// streams ends is not known.
	streamRetryAfter = 5
)

// limits are the gateway's limits per user and per client address; a nil field is a limit that is off.
type limits struct {
	user          ratelimit.Limiter // GATEWAY_RATE_LIMIT_USER, by subject
	userRate      config.Rate
	anonymous     ratelimit.Limiter // GATEWAY_RATE_LIMIT_ANONYMOUS, by client address
	anonymousRate config.Rate
	tools         ratelimit.Limiter // the policy rules' limits, by subject, rule and tool
	streams       *streamCounter
	trusted       []netip.Prefix
	limited       *prometheus.CounterVec
	logs          map[string]*rate.Sometimes
	log           *slog.Logger
}

// newLimits builds the limits cfg turns on.
func newLimits(cfg *config.Config, m *Metrics, log *slog.Logger, now func() time.Time) *limits {
	l := &limits{trusted: cfg.TrustedProxyList, limited: m.Limited, log: log, logs: map[string]*rate.Sometimes{}}
	for _, name := range []string{limitUserRate, limitUserStreams, limitAnonymousRate, limitToolRate} {
		l.logs[name] = &rate.Sometimes{Interval: limitLogInterval}
	}
	if cfg.RateLimitUser.On() {
		l.user, l.userRate = ratelimit.NewMemory(limitKeys, now), cfg.RateLimitUser
	}
	if cfg.RateLimitAnonymous.On() {
		l.anonymous, l.anonymousRate = ratelimit.NewMemory(limitKeys, now), cfg.RateLimitAnonymous
	}
	if cfg.PolicyFile != "" {
		l.tools = ratelimit.NewMemory(limitKeys, now)
	}
	if cfg.MaxStreamsUser > 0 {
		l.streams = &streamCounter{max: cfg.MaxStreamsUser, open: map[string]int{}}
	}
	return l
}

// refuse counts a request refused over limit, logs it once per interval, and returns the answer: 429 with
// Retry-After, in whole seconds (at least 1).
func (l *limits) refuse(limit string, retry time.Duration) *Error {
	l.count(limit)
	return &Error{Status: http.StatusTooManyRequests, Code: "too_many_requests", Description: limitTexts[limit],
		RetryAfter: retryAfterSeconds(retry), Attrs: []slog.Attr{slog.String("limit", limit)}}
}

// count counts a request refused over limit, and logs it once per interval.
func (l *limits) count(limit string) {
	l.limited.WithLabelValues(limit).Inc()
	l.logs[limit].Do(func() {
		l.log.Warn("requests over a limit refused (logged once per interval)", "limit", limit, "interval", limitLogInterval)
	})
}

// retryAfterSeconds is a Retry-After for a wait of d: whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int { return max(1, int((d+time.Second-1)/time.Second)) }

// takeToolCall takes a tool call of r's verified caller from its budget under rule's limit l, one budget per
// caller (issuer and sub), rule and budget (the tool, or the pattern whose tools share one: policy.Decision.LimitKey);
// a call over it is counted (tool_rate) and its wait returned. Authorize answers it.
func (l *limits) takeToolCall(r *http.Request, rule, budget string, lim *policy.Limit) (bool, time.Duration) {
	st := stateOf(r.Context())
	if st == nil || st.principal == nil {
		return true, 0 // unreachable: Authorize runs for verified callers only
	}
	key := st.principal.UserKey() + "\x00" + rule + "\x00" + toolKey(budget)
	ok, retry := l.tools.Allow(r.Context(), key, config.Rate{PerSecond: lim.PerSecond, Burst: lim.Burst})
	if !ok {
		l.count(limitToolRate)
	}
	return ok, retry
}

// maxToolKey is the longest tool name a budget's key holds as it is: MCP asks for names of at most 128 characters.
const maxToolKey = 128

// toolKey is how a tool name appears in its budget's key: as it is, or, when longer than maxToolKey, its SHA-256, so
// that a caller writing megabyte names under a rule that grants a pattern cannot make budgets hold megabytes.
func toolKey(tool string) string {
	if len(tool) <= maxToolKey {
		return tool
	}
	sum := sha256.Sum256([]byte(tool))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// limitTexts are the descriptions of the 429s, by limit.
var limitTexts = map[string]string{
	limitUserRate:      "too many requests for this user: retry after the time Retry-After says",
	limitUserStreams:   "too many open event streams for this user: close one, or retry later",
	limitAnonymousRate: "too many requests without a valid token from this address: retry after the time Retry-After says",
}

// limitUsers refuses a verified caller's request over GATEWAY_RATE_LIMIT_USER, counted by the token's issuer and sub
// (a sub is unique only within its issuer). It comes after Authenticate, which records the caller, and before Authorize reads the body, so
// the 429 is plain JSON, never a JSON-RPC error: refusing must not cost reading the request.
func limitUsers(l *limits) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if st := stateOf(r.Context()); st != nil && st.principal != nil {
				if ok, retry := l.user.Allow(r.Context(), st.principal.UserKey(), l.userRate); !ok {
					writeError(w, r, l.refuse(limitUserRate, retry))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// anonymousRefusal counts a request refused for its token against its client address, and returns the 429 that answers it
// instead once the address is over GATEWAY_RATE_LIMIT_ANONYMOUS, nil otherwise.
func (l *limits) anonymousRefusal(r *http.Request) *Error {
	if ok, retry := l.anonymous.Allow(r.Context(), clientaddr.Key(r, l.trusted), l.anonymousRate); !ok {
		return l.refuse(limitAnonymousRate, retry)
	}
	return nil
}

// openStream takes one of the caller's stream slots for r, a long-lived event stream, and records in st how to give
// it back (st.endStream); when the caller holds GATEWAY_MAX_STREAMS_USER streams already, it answers 429 and returns
// false.
func (l *limits) openStream(w http.ResponseWriter, r *http.Request, st *reqState) bool {
	if st == nil || st.principal == nil {
		return true
	}
	sub := st.principal.UserKey()
	if !l.streams.open1(sub) {
		writeError(w, r, l.refuse(limitUserStreams, streamRetryAfter*time.Second))
		return false
	}
	st.streamEnd = func() { l.streams.close1(sub) }
	return true
}

// endStream gives back the stream slot st holds, if it still holds one.
func (st *reqState) endStream() {
	if st != nil && st.streamEnd != nil {
		st.streamEnd()
		st.streamEnd = nil
	}
}

// streamCounter counts the open streams per key; a key with none is not held.
type streamCounter struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

// open1 counts one more stream for key, unless key has max open already.
func (c *streamCounter) open1(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] >= c.max {
		return false
	}
	c.open[key]++
	return true
}

// close1 counts one stream of key fewer.
func (c *streamCounter) close1(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] <= 1 {
		delete(c.open, key)
		return
	}
	c.open[key]--
}
