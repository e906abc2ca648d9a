// Package authz applies package policy's decisions to the MCP messages of one request, and to the answer. It reads a
// POST's JSON-RPC messages the way every peer would, or not at all (jsonrpc.go), finds what each names and decides it,
// and works out what goes upstream and what the gateway answers itself (exchange.go); it filters the list responses of
// the upstream's answer, JSON or an event stream, to what the caller may use (filter.go, sse.go), and writes one audit
// event per message (audit.go). It writes no HTTP response: it returns values and typed errors, and package proxy,
// whose Authorize middleware calls it, decides what the client sees.
//
// One request: New; then ReadPost for a POST, StepUp, Forward; the upstream's answer through ModifyResponse, when
// Rewrites says it must be; AuditLog.Write once the request has ended. The wire rules it follows are docs/policy.md's.
package authz

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// Decider decides what a caller may see and use. *policy.Policy is one.
type Decider interface {
	// Decide returns the decision for the name of kind for a caller with facts f.
	Decide(f *policy.Facts, kind policy.Kind, name string) policy.Decision
}

// The protocol version from which the Mcp-Method and Mcp-Name headers are required, and a resource that is not
// found is -32602.
const version20260728 = "2026-07-28"

// JSON-RPC error codes the gateway answers with.
const (
	codeParseError     = -32700
	codeInvalidParams  = -32602
	codeInternalError  = -32603
	codeNotFound       = -32002 // a resource not found, to 2025-11-25
	codeHeaderMismatch = -32020
	// codeRateLimited is a call over its rule's limit: outside the range JSON-RPC reserves (-32768 to -32000),
	// and the HTTP status it comes with, as other MCP gateways answer it.
	codeRateLimited = 429
)

// Exchange is what the gateway learnt of one request's MCP messages, and what the answer still needs: list responses
// to filter, the gateway's answers to merge, the audit events to write. New makes one per request; its methods are
// called one at a time, in the order of the package documentation.
type Exchange struct {
	policy  Decider
	facts   *policy.Facts
	factsOf policy.Facts // what facts points to
	one     [1]message   // msgs of a POST of one message
	fwd     bodyRead     // the body forwarded
	version string       // MCP-Protocol-Version
	body    []byte       // the request body as read; msgs' spans point into it
	msgs    []message
	batch   bool
	// resume is a GET that resumes an event stream (Last-Event-ID): the responses it replays are not known by id, so
	// every response whose result holds a list is filtered.
	resume bool
	// answers are the gateway's answers to the denied requests of a batch whose other messages went upstream: merged
	// into the upstream's answer.
	answers [][]byte
	// failed are the errors that fail-closed list requests get, waiting to be sent.
	failed [][]byte
	// status is the upstream's response status; 0 before it answers.
	status int
	// decided is whether the messages were decided (the POST was read and its headers agreed with it).
	decided bool
}

// New returns the exchange of request r, for a caller with facts f, decided by d. It reads r's MCP-Protocol-Version,
// and whether r is a GET that resumes an event stream (Resumes); ReadPost reads a POST's body.
func New(d Decider, f policy.Facts, r *http.Request) *Exchange {
	ex := &Exchange{policy: d, factsOf: f, version: r.Header.Get("Mcp-Protocol-Version")}
	ex.facts = &ex.factsOf
	ex.resume = r.Method == http.MethodGet && r.Header.Get("Last-Event-ID") != ""
	return ex
}

// Resumes reports whether the request is a GET that resumes an event stream (Last-Event-ID). The answer may replay
// list responses, whose requests the gateway did not see: ModifyResponse filters every list result in it by its
// shape.
func (ex *Exchange) Resumes() bool { return ex.resume }

// StepUp returns the scopes to challenge for when a message needs more than the token has (policy.Decision.Scopes of
// every such message, sorted, each once), or nil when none does. The whole POST is then refused.
func (ex *Exchange) StepUp() []string {
	var scopes []string
	for i := range ex.msgs {
		if d := &ex.msgs[i].decision; d.Outcome == policy.StepUp {
			scopes = append(scopes, d.Scopes...)
		}
	}
	if scopes == nil {
		return nil
	}
	slices.Sort(scopes)
	return slices.Compact(scopes)
}

// UpstreamStatus returns the upstream's response status as ModifyResponse saw it, or 0 when it saw none.
func (ex *Exchange) UpstreamStatus() int { return ex.status }

// message is one JSON-RPC message of a POST, as the gateway read it.
type message struct {
	raw    span   // in the body
	id     []byte // raw; nil for a notification
	idAt   span   // id's place in the body
	fwdID  []byte // the id the upstream gets for a list request (listID); nil: id
	key    string // idKey of id
	method string // "" for a response (the client answering the server)
	kind   policy.Kind
	name   string   // what the message names, decided on ("" when kind is "")
	names  []string // subscriptions/listen: every resource it names
	args   []byte   // tools/call, prompts/get: params.arguments as sent
	list   *listKind

	decision policy.Decision
	decided  bool
	code     int // the JSON-RPC error code the gateway answered with; 0: forwarded (or a notification it dropped)
	dropped  bool
	// retry, when positive, is how long the caller must wait before the call fits its rule's limit: the gateway
	// answers it instead of the upstream (Limit).
	retry time.Duration
	// For list requests: whether the upstream's response has passed, and how many items it had and kept.
	listDone          bool
	itemsIn, itemsOut int
}

// listKind is what a list method's result holds.
type listKind struct {
	items string      // the result member holding the items
	field string      // the item member that names it
	kind  policy.Kind // what that names
}

var listKinds = map[string]*listKind{
	"tools/list":               {"tools", "name", policy.Tool},
	"prompts/list":             {"prompts", "name", policy.Prompt},
	"resources/list":           {"resources", "uri", policy.Resource},
	"resources/templates/list": {"resourceTemplates", "uriTemplate", policy.Resource},
}

// The members of a JSON-RPC message, in msgKeys' order.
const (
	kJSONRPC = iota
	kID
	kMethod
	kParams
	kResult
	kError
)

var msgKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}

// errInvalidMessage refuses a body that is JSON but not JSON-RPC messages.
var errInvalidMessage = errors.New("not a JSON-RPC message")

// ReadPost reads a POST's body (at most max bytes) and its messages, one or a batch, checks the Mcp-Method and
// Mcp-Name headers against them (policy.md §1.5), and decides each message on what it names (policy.md §1.1), calling
// count, when not nil, with each decision. It fails with the body's read error as it was (*http.MaxBytesError past
// max), with *ParseError for a body that is not JSON-RPC messages, or whose members cannot be read one way, and with
// *HeaderError for headers that disagree with the body; the messages are decided only when it returns nil.
func (ex *Exchange) ReadPost(r *http.Request, max int64, count func(policy.Decision)) error {
	if r.Body == nil {
		r.Body = http.NoBody
	}
	body, err := readAll(r.Body, min(r.ContentLength, maxBodyAhead), max)
	r.Body.Close()
	if err != nil {
		return err
	}
	ex.body = body
	if ex.msgs, ex.batch, err = parseMessages(ex.one[:0], body); err != nil {
		return &ParseError{Err: err}
	}
	if e := checkHeaders(r.Header, ex.msgs, ex.batch, ex.version); e != nil {
		return e
	}
	for i := range ex.msgs {
		m := &ex.msgs[i]
		ex.decide(m)
		if m.decided && count != nil {
			count(m.decision)
		}
	}
	ex.decided = true
	return nil
}

// ParseError refuses a POST whose body is not JSON-RPC messages, or holds a member of interest twice or spelt in
// another letter case (see jsonrpc.go): the gateway does not guess what the upstream would read.
type ParseError struct {
	Err error // what is wrong with the body
}

func (e *ParseError) Error() string { return "parse error: " + e.Err.Error() }

func (e *ParseError) Unwrap() error { return e.Err }

// Response is the JSON-RPC answer to the request: -32700 Parse error, with a null id.
func (e *ParseError) Response() []byte { return rpcError(nil, codeParseError, "Parse error", nil) }

// HeaderError refuses a request whose Mcp-Method or Mcp-Name header disagrees with its body, or lacks one its
// protocol version requires. Its text is the JSON-RPC error's message.
type HeaderError struct {
	id  []byte // the request's id, raw
	msg string
}

func (e *HeaderError) Error() string { return e.msg }

// Response is the JSON-RPC answer to the request: -32020, with the request's id.
func (e *HeaderError) Response() []byte { return rpcError(e.id, codeHeaderMismatch, e.msg, nil) }

// maxBodyAhead is how much of a request body's declared length is allocated before it arrives: a client declares
// what it likes, and sends it as slowly as the read timeout allows. MCP requests are smaller; a larger body grows as
// it comes.
const maxBodyAhead = 64 << 10

// readAll reads a request body of declared length size (-1: unknown), in one allocation when the length is known,
// and fails with *http.MaxBytesError past max bytes.
func readAll(r io.Reader, size, max int64) ([]byte, error) {
	if size < 0 || size > max {
		size = 512
	}
	b := make([]byte, 0, size+1) // +1: the read that finds the end
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		switch {
		case int64(len(b)) > max:
			return nil, &http.MaxBytesError{Limit: max}
		case err == io.EOF:
			return b, nil
		case err != nil:
			return nil, err
		}
	}
}

// parseMessages reads a POST body, one JSON-RPC message or a batch (an array of them, 2025-03-26), appending them to
// msgs.
func parseMessages(msgs []message, body []byte) (_ []message, batch bool, err error) {
	if !json.Valid(body) {
		return nil, false, errors.New("the body is not JSON")
	}
	i := skipSpace(body, 0)
	switch body[i] {
	case '{':
		m, err := parseMessage(body, span{i, skipValue(body, i)})
		return append(msgs, m), false, err
	case '[':
		elements(body, func(s span) bool {
			var m message
			if m, err = parseMessage(body, s); err != nil {
				return false
			}
			msgs = append(msgs, m)
			return true
		})
		if err == nil && len(msgs) == 0 {
			err = errors.New("an empty batch")
		}
		return msgs, true, err
	}
	return nil, false, errInvalidMessage
}

// parseMessage reads the message at s in body: its id, its method and what it names.
func parseMessage(body []byte, s span) (message, error) {
	b := s.in(body)
	var v [6]span
	if _, err := members(b, msgKeys, v[:]); err != nil {
		return message{}, err
	}
	if ver := v[kJSONRPC].in(b); string(ver) != `"2.0"` {
		if s, _ := v[kJSONRPC].str(b); s != "2.0" {
			return message{}, errInvalidMessage
		}
	}
	m := message{raw: s}
	if v[kID].ok() {
		m.id = v[kID].in(b)
		m.idAt = span{s.start + v[kID].start, s.start + v[kID].end}
	}
	if !v[kMethod].ok() {
		if m.id != nil && v[kResult].ok() != v[kError].ok() {
			return m, nil // a response to a request of the server's
		}
		return message{}, errInvalidMessage
	}
	var ok bool
	if m.method, ok = methodName(v[kMethod].in(b)); !ok || v[kResult].ok() || v[kError].ok() {
		return message{}, errInvalidMessage // a method with a result is a request to some peers, a response to others
	}
	var params []byte
	if v[kParams].ok() {
		params = v[kParams].in(b)
	}
	return m, m.readParams(params)
}

// methods are the method names the gateway knows, so that reading one allocates nothing.
var methods = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{"initialize", "ping", "tools/call", "tools/list", "prompts/get", "prompts/list",
		"resources/read", "resources/list", "resources/templates/list", "resources/subscribe", "resources/unsubscribe",
		"completion/complete", "subscriptions/listen", "logging/setLevel", "notifications/initialized",
		"notifications/cancelled", "notifications/progress", "notifications/roots/list_changed", "server/discover"} {
		m[`"`+name+`"`] = name
	}
	return m
}()

// methodName returns the method that raw (a JSON value) names, and false when it is not a string.
func methodName(raw []byte) (string, bool) {
	if name, ok := methods[string(raw)]; ok {
		return name, true
	}
	return decodeString(span{0, len(raw)}, raw)
}

// readParams finds what the message names in its params (policy.md §1.1). Params that are not an object name ""; a
// member of interest that is ambiguous refuses the message.
func (m *message) readParams(p []byte) error {
	var v [3]span
	get := func(keys ...string) error {
		if p == nil {
			return nil
		}
		if _, err := members(p, keys, v[:len(keys)]); err != nil && !errors.Is(err, errNotObject) {
			return err
		}
		return nil
	}
	switch m.method {
	case "tools/call", "prompts/get":
		m.kind = policy.Tool
		if m.method == "prompts/get" {
			m.kind = policy.Prompt
		}
		if err := get("name", "arguments"); err != nil {
			return err
		}
		m.name, _ = v[0].str(p)
		if v[1].ok() {
			m.args = v[1].in(p)
		}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		m.kind = policy.Resource
		if err := get("uri"); err != nil {
			return err
		}
		m.name, _ = v[0].str(p)
	case "completion/complete":
		return m.readRef(p)
	case "subscriptions/listen":
		return m.readListen(p)
	default:
		m.list = listKinds[m.method]
	}
	return nil
}

// readRef reads completion/complete's params.ref: a prompt by name, or a resource template by URI. Any other
// reference is decided as a prompt named by its type, which no rule grants by accident.
func (m *message) readRef(p []byte) error {
	m.kind = policy.Prompt
	var v [1]span
	if p != nil {
		if _, err := members(p, []string{"ref"}, v[:]); err != nil && !errors.Is(err, errNotObject) {
			return err
		}
	}
	if !v[0].isObject(p) {
		return nil
	}
	ref := v[0].in(p)
	var r [3]span
	if _, err := members(ref, []string{"type", "name", "uri"}, r[:]); err != nil {
		return err
	}
	typ, _ := r[0].str(ref)
	switch typ {
	case "ref/prompt":
		m.name, _ = r[1].str(ref)
	case "ref/resource":
		m.kind = policy.Resource
		m.name, _ = r[2].str(ref)
	default:
		m.name = "\x00" + typ
	}
	return nil
}

// readListen reads subscriptions/listen's params.notifications.resourceSubscriptions (2026-07-28). A listen without
// resource subscriptions names nothing.
func (m *message) readListen(p []byte) error {
	var v [1]span
	if p == nil {
		return nil
	}
	if _, err := members(p, []string{"notifications"}, v[:]); err != nil && !errors.Is(err, errNotObject) {
		return err
	}
	if !v[0].isObject(p) {
		return nil
	}
	n := v[0].in(p)
	var s [1]span
	if _, err := members(n, []string{"resourceSubscriptions"}, s[:]); err != nil {
		return err
	}
	subs := s[0].in(n)
	elements(subs, func(e span) bool {
		uri, _ := e.str(subs)
		m.names = append(m.names, uri)
		return true
	})
	if m.names != nil {
		m.kind = policy.Resource
	}
	return nil
}

// checkHeaders checks the Mcp-Method and Mcp-Name headers against the body (policy.md §1.5). The relay routes on
// Mcp-Method, so a header that is present must agree at every version; from 2026-07-28 a request must carry them.
func checkHeaders(h http.Header, msgs []message, batch bool, version string) *HeaderError {
	methods, names := h["Mcp-Method"], h["Mcp-Name"]
	strict := version >= version20260728
	if len(methods) == 0 && len(names) == 0 && !strict {
		return nil
	}
	if batch {
		if len(methods)+len(names) > 0 {
			return headerMismatch(nil, "Mcp-Method and Mcp-Name headers do not apply to a batch")
		}
		return nil
	}
	m := &msgs[0]
	if len(methods) > 1 || len(names) > 1 {
		return headerMismatch(m.id, "Header mismatch: Mcp-Method and Mcp-Name must appear at most once")
	}
	request := m.method != "" && m.id != nil
	switch {
	case len(methods) == 0:
		if strict && request {
			return headerMismatch(m.id, "Header mismatch: missing required Mcp-Method header")
		}
	case methods[0] != m.method:
		return headerMismatch(m.id, "Header mismatch: Mcp-Method header value '"+methods[0]+"' does not match body value '"+m.method+"'")
	}
	switch m.method {
	case "tools/call", "prompts/get", "resources/read":
	default:
		if len(names) > 0 {
			return headerMismatch(m.id, "Header mismatch: Mcp-Name header on a method that names nothing")
		}
		return nil
	}
	if len(names) == 0 {
		if strict && request {
			return headerMismatch(m.id, "Header mismatch: missing required Mcp-Name header")
		}
		return nil
	}
	name, ok := headerValue(names[0])
	if !ok {
		return headerMismatch(m.id, "Header mismatch: invalid Mcp-Name header value")
	}
	if name != m.name {
		return headerMismatch(m.id, "Header mismatch: Mcp-Name header value '"+name+"' does not match body value '"+m.name+"'")
	}
	return nil
}

// headerValue decodes an MCP header value: =?base64?…?= is base64 of the value.
func headerValue(v string) (string, bool) {
	enc, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, true
	}
	enc, ok = strings.CutSuffix(enc, "?=")
	if !ok {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	return string(b), err == nil
}

func headerMismatch(id []byte, msg string) *HeaderError {
	return &HeaderError{id: id, msg: msg}
}

// decide decides a message that names something. subscriptions/listen names many resources: one denied denies it,
// else those that need scopes ask for all of theirs at once.
func (ex *Exchange) decide(m *message) {
	if m.kind == "" {
		return
	}
	m.decided = true
	if m.names == nil {
		m.decision = ex.policy.Decide(ex.facts, m.kind, m.name)
		return
	}
	var scopes []string
	for i, uri := range m.names {
		d := ex.policy.Decide(ex.facts, m.kind, uri)
		switch {
		case d.Outcome == policy.Deny:
			m.decision, m.name = d, uri
			return
		case d.Outcome == policy.StepUp:
			if scopes == nil {
				m.decision, m.name = d, uri
			}
			scopes = append(scopes, d.Scopes...)
		case i == 0:
			m.decision, m.name = d, uri
		}
	}
	if scopes != nil {
		slices.Sort(scopes)
		m.decision.Scopes = slices.Compact(scopes)
	}
}

// denial is the gateway's answer to a denied request: what the MCP server answers for a name it does not have, so
// that a hidden name cannot be told from a missing one (policy.md §1.3).
func (ex *Exchange) denial(m *message) []byte {
	switch m.kind {
	case policy.Tool:
		m.code = codeInvalidParams
		return rpcError(m.id, m.code, "Unknown tool: "+m.name, nil)
	case policy.Prompt:
		m.code = codeInvalidParams
		return rpcError(m.id, m.code, "Unknown prompt: "+strings.TrimPrefix(m.name, "\x00"), nil)
	}
	m.code = codeNotFound
	if ex.version >= version20260728 {
		m.code = codeInvalidParams
	}
	return rpcError(m.id, m.code, "Resource not found", map[string]string{"uri": m.name})
}

// MaxLimitTakes is how many budgets one POST may take from (calls of take in Limit): a batch of thousands of calls
// must not cost thousands of limiter round trips (to Redis, one after the other) nor create thousands of budgets in a
// limiter that holds a bounded number. The limited calls of a batch beyond it are answered as over their limit.
const MaxLimitTakes = 16

// Limit takes one call from the caller's budget for each tool call the policy allowed under a rule with a limit:
// take(rule, budget, limit) reports whether the call fits in its budget (policy.Decision.LimitKey: the tool, or the
// pattern whose tools share one), and when not, how long until it would. A call that does not
// fit is not forwarded: Forward answers it with a JSON-RPC error (code 429, data.retryAfterSeconds). In a batch, a
// budget that refused a call is not asked again for the calls after it, which are refused with the same wait, and
// beyond MaxLimitTakes takes the remaining limited calls are refused with a wait of a second. Limit returns the
// longest of those waits, 0 when every call fits. Call it after ReadPost, and only when StepUp is nil.
func (ex *Exchange) Limit(take func(rule, budget string, l *policy.Limit) (ok bool, retry time.Duration)) time.Duration {
	var longest time.Duration
	var refused map[[2]string]time.Duration // allocated at the first refusal
	takes := 0
	for i := range ex.msgs {
		m := &ex.msgs[i]
		if !m.decided || m.kind != policy.Tool || m.decision.Outcome != policy.Allow || m.decision.Limit == nil {
			continue
		}
		key := [2]string{m.decision.Rule, m.decision.LimitKey}
		if retry, ok := refused[key]; ok {
			m.retry = retry
			continue
		}
		if takes >= MaxLimitTakes {
			m.retry = time.Second
			longest = max(longest, m.retry)
			continue
		}
		takes++
		if ok, retry := take(m.decision.Rule, m.decision.LimitKey, m.decision.Limit); !ok {
			m.retry = max(retry, time.Second)
			longest = max(longest, m.retry)
			if refused == nil {
				refused = map[[2]string]time.Duration{}
			}
			refused[key] = m.retry
		}
	}
	return longest
}

// limited is the gateway's answer to a call over its rule's limit.
func (ex *Exchange) limited(m *message) []byte {
	m.code = codeRateLimited
	secs := strconv.Itoa(int((m.retry + time.Second - 1) / time.Second))
	return rpcErrorRaw(m.id, m.code, "Rate limit exceeded for tool "+m.name+": retry after "+secs+" s",
		[]byte(`{"retryAfterSeconds":`+secs+`}`))
}

// Answer is the gateway's own answer to a POST whose every message the policy denied or limited.
type Answer struct {
	// Status is 200; 400 for one request at 2026-07-28, as the go-sdk server answers -32602; 202 when the denied
	// messages were notifications only; 429 when a call was over its limit.
	Status int
	// Body is the JSON-RPC response, or a batch's array of them; nil with 202.
	Body []byte
}

// Forward answers the denied and limited messages and sends the rest on, as r's body: the body as read when nothing was denied,
// else a batch of the other messages as read, the gateway's answers to the denied ones kept for ModifyResponse to
// merge into the upstream's; list requests with ids of the gateway's (listID). It reports false when the policy
// denied every message: nothing goes upstream, and the client gets answer.
func (ex *Exchange) Forward(r *http.Request) (answer Answer, ok bool) {
	var answers [][]byte
	kept, overLimit := 0, false
	for i := range ex.msgs {
		m := &ex.msgs[i]
		if m.retry > 0 {
			m.dropped, overLimit = true, true
			if m.id != nil {
				answers = append(answers, ex.limited(m))
			}
			continue
		}
		if m.decision.Outcome != policy.Deny || !m.decided {
			kept++
			continue
		}
		m.dropped = true
		if m.id != nil {
			answers = append(answers, ex.denial(m))
		}
	}
	if kept == 0 {
		a := ex.answerAll(answers)
		if overLimit {
			a.Status = http.StatusTooManyRequests
		}
		return a, false
	}
	lists := false
	for i := range ex.msgs {
		if m := &ex.msgs[i]; m.list != nil && m.id != nil && !m.dropped {
			m.fwdID, lists = listID(), true
		}
	}
	body := ex.body
	if kept < len(ex.msgs) || lists {
		body = ex.outgoing(kept < len(ex.msgs))
		r.ContentLength, r.TransferEncoding = int64(len(body)), nil
		ex.answers = answers
	}
	ex.fwd.Reset(body)
	r.Body = &ex.fwd
	r.GetBody = nil
	if ex.Rewrites() {
		ex.keyIDs()
	}
	return Answer{}, true
}

// listID returns a new id for a list request as the upstream gets it, so that its answer goes to that request alone:
// an upstream that sends a response to the latest request with its id (the TypeScript and Python SDKs' transports)
// would send a list's answer, unfiltered, to a call of the client's with the same id. 128 random bits: no client can
// send one of them in another request.
func listID() []byte { return []byte(`"mcp-gateway-list-` + rand.Text() + `"`) }

// outgoing is the body sent upstream: the messages as read, each list request with its fwdID in place of its id, and
// with rebatch, only the messages not dropped, as a batch.
func (ex *Exchange) outgoing(rebatch bool) []byte {
	out := make([]byte, 0, len(ex.body)+64)
	if !rebatch {
		last := 0
		for _, m := range ex.msgs {
			if m.fwdID != nil {
				out = append(append(out, ex.body[last:m.idAt.start]...), m.fwdID...)
				last = m.idAt.end
			}
		}
		return append(out, ex.body[last:]...)
	}
	out = append(out, '[')
	for _, m := range ex.msgs {
		if m.dropped {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		raw := m.raw.in(ex.body)
		if m.fwdID != nil {
			raw = splice(raw, edit{span{m.idAt.start - m.raw.start, m.idAt.end - m.raw.start}, m.fwdID})
		}
		out = append(out, raw...)
	}
	return append(out, ']')
}

// bodyRead is a request body the gateway read: what it forwards.
type bodyRead struct{ bytes.Reader }

func (*bodyRead) Close() error { return nil }

// answerAll answers a POST whose every message the gateway denied: one answer as is, a batch's as an array, none
// (denied notifications) with 202. At 2026-07-28 a denial is a 400, as the go-sdk server answers -32602.
func (ex *Exchange) answerAll(answers [][]byte) Answer {
	a := Answer{Status: http.StatusOK}
	switch {
	case len(answers) == 0:
		a.Status = http.StatusAccepted
	case !ex.batch:
		a.Body = answers[0]
		if ex.version >= version20260728 {
			a.Status = http.StatusBadRequest
		}
	default:
		a.Body = joinArray(answers)
	}
	return a
}

// joinArray returns the JSON array of the values.
func joinArray(values [][]byte) []byte {
	n := 2
	for _, v := range values {
		n += len(v) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, ']')
}
