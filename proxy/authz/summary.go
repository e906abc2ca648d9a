package authz

import (
	"strings"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// Summary is what a POST's messages named and how they were decided, for a trace: the message of a POST that is not
// a batch, and counts for a batch.
type Summary struct {
	// Messages is how many messages were read; 0 when the body could not be read as JSON-RPC.
	Messages int
	// Batch is whether the messages came as a batch; then only Messages and Denied are set.
	Batch bool
	// Method is the message's method; "" for a response.
	Method string
	// ID is the request's id as sent (a JSON string without its quotes); "" for a notification.
	ID string
	// Kind and Name are what the message names (a tool's name for tools/call); "" when it names nothing.
	Kind policy.Kind
	Name string
	// Decided is whether the policy decided the message; Decision is then its decision.
	Decided  bool
	Decision policy.Decision
	// Denied counts the messages the policy denied.
	Denied int
}

// Summary returns what the messages ReadPost read named and how they were decided. Call it after ReadPost.
func (ex *Exchange) Summary() Summary {
	s := Summary{Messages: len(ex.msgs), Batch: ex.batch}
	for i := range ex.msgs {
		if m := &ex.msgs[i]; m.decided && m.decision.Outcome == policy.Deny {
			s.Denied++
		}
	}
	if ex.batch || len(ex.msgs) != 1 {
		return s
	}
	m := &ex.msgs[0]
	s.Method, s.Kind, s.Name, s.Decided, s.Decision = m.method, m.kind, strings.TrimPrefix(m.name, "\x00"), m.decided, m.decision
	s.ID = strings.Trim(string(m.id), `"`)
	return s
}

// HeaderValue decodes the value of an Mcp-Name header as the body's name would read: =?base64?…?= is base64 of the
// name. It reports false for a malformed value.
func HeaderValue(v string) (string, bool) { return headerValue(v) }
