package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/mcp-gateway/gateway/proxy/policy"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// Decider decides what a caller may see and use. *policy.Policy is one; the gateway reads the one in force for each
// request (see policyStore), so that a reload applies to the next request.
type Decider interface {
	// Decide returns the decision for the name of kind for a caller with facts f.
	Decide(f *policy.Facts, kind policy.Kind, name string) policy.Decision
	// Rules returns the rule names, the only values of the decisions metric's rule label besides "default".
	Rules() []string
}

// AuthorizeOptions are what Authorize needs besides the policy.
type AuthorizeOptions struct {
	// MaxBodyBytes bounds the request body Authorize reads (GATEWAY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// ResourceMetadata is the protected resource metadata URL, sent in step-up challenges.
	ResourceMetadata string
	// Audit receives one event per MCP message; nil: none.
	Audit *AuditLog
	// Count counts each message's decision (mcp_gateway_policy_decisions_total); nil: not counted.
	Count func(policy.Decision)
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
)

// Authorize applies the policy current returns to the MCP messages of a request, for a caller that Authenticate
// verified. A POST's body is read once (at most MaxBodyBytes) and each of its messages decided on what it names
// (policy.md §1.1): a denied request is answered as the MCP server answers an unknown tool, prompt or resource and
// never reaches the upstream; a request that needs more scopes makes the whole POST a 403 insufficient_scope
// challenge; the upstream's answers to list requests are filtered (see mcpExchange.modify). What is forwarded is
// byte for byte what was read, less the messages the gateway answered, and with list requests under ids of the
// gateway's (listID). A GET that resumes a stream (Last-Event-ID)
// has its list responses filtered too; other requests pass. Each message gets one audit event when the request ends.
func Authorize(current func() Decider, o AuthorizeOptions) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st := stateOf(r.Context())
			if st == nil || st.principal == nil {
				writeError(w, r, errors.New("authorize: no verified caller")) // unreachable: Authenticate comes first
				return
			}
			d := current()
			if d == nil {
				writeError(w, r, errors.New("authorize: no policy in force")) // unreachable: the store always has one
				return
			}
			ex := &mcpExchange{policy: d, version: r.Header.Get("Mcp-Protocol-Version")}
			ex.factsOf = policy.FactsFromClaims(st.principal.Claims())
			ex.facts = &ex.factsOf
			switch {
			case r.Method == http.MethodPost:
				if !ex.readPost(w, r, o) {
					ex.finish(w, st, o, false)
					return
				}
			case r.Method == http.MethodGet && r.Header.Get("Last-Event-ID") != "":
				ex.resume = true
			default:
				next.ServeHTTP(w, r)
				return
			}
			if ex.rewrites() {
				st.mcp = ex
				r.Header.Del("Accept-Encoding") // an answer the gateway rewrites must come uncompressed
			} else if o.Audit != nil {
				st.mcp = ex // for the upstream's status in the audit events
			}
			next.ServeHTTP(w, r)
			ex.finish(w, st, o, true)
		})
	}
}

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

// readPost reads and decides a POST. It reports whether the request goes on upstream; when it does not, it has
// answered it.
func (ex *mcpExchange) readPost(w http.ResponseWriter, r *http.Request, o AuthorizeOptions) bool {
	if r.Body == nil {
		r.Body = http.NoBody
	}
	body, err := readAll(r.Body, min(r.ContentLength, maxBodyAhead), o.MaxBodyBytes)
	r.Body.Close()
	if err != nil {
		writeError(w, r, bodyFailure(r, err, o.MaxBodyBytes))
		return false
	}
	ex.body = body
	if ex.msgs, ex.batch, err = parseMessages(ex.one[:0], body); err != nil {
		writeError(w, r, &Error{Status: http.StatusBadRequest, Code: "parse_error", Cause: err,
			JSONRPC: rpcError(nil, codeParseError, "Parse error", nil)})
		return false
	}
	if e := checkHeaders(r.Header, ex.msgs, ex.batch, ex.version); e != nil {
		writeError(w, r, e)
		return false
	}
	var scopes []string
	for i := range ex.msgs {
		m := &ex.msgs[i]
		ex.decide(m)
		if m.decided && o.Count != nil {
			o.Count(m.decision)
		}
		if m.decision.Outcome == policy.StepUp {
			scopes = append(scopes, m.decision.Scopes...)
		}
	}
	ex.decided = true
	if scopes != nil {
		slices.Sort(scopes)
		writeError(w, r, refusal(token.ReasonScope, o.ResourceMetadata, slices.Compact(scopes), nil,
			slog.String("policy", "step_up")))
		return false
	}
	return ex.forward(w, r)
}

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

// bodyFailure is the answer to a request body that could not be read: too large (413), too slow (408), a client that
// went away (499), or cut (400).
func bodyFailure(r *http.Request, err error, max int64) *Error {
	var tooLarge *http.MaxBytesError
	st := stateOf(r.Context())
	if errors.As(err, &tooLarge) || errors.Is(err, errBodyTimeout) || r.Context().Err() != nil ||
		st != nil && st.body != nil && st.body.timedOut.Load() {
		return upstreamFailure(r, err, max, "")
	}
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "the request body could not be read",
		Close: true, Cause: err}
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
func checkHeaders(h http.Header, msgs []message, batch bool, version string) *Error {
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

func headerMismatch(id []byte, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "header_mismatch", Cause: errors.New(msg),
		JSONRPC: rpcError(id, codeHeaderMismatch, msg, nil)}
}

// decide decides a message that names something. subscriptions/listen names many resources: one denied denies it,
// else those that need scopes ask for all of theirs at once.
func (ex *mcpExchange) decide(m *message) {
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
func (ex *mcpExchange) denial(m *message) []byte {
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

// forward answers the denied messages and sends the rest on: the body as read when nothing was denied, else a batch
// of the other messages as read; list requests with ids of the gateway's (listID). It reports whether anything goes
// upstream.
func (ex *mcpExchange) forward(w http.ResponseWriter, r *http.Request) bool {
	var answers [][]byte
	kept := 0
	for i := range ex.msgs {
		m := &ex.msgs[i]
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
		writeError(w, r, ex.answerAll(answers))
		return false
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
	if ex.rewrites() {
		ex.keyIDs()
	}
	return true
}

// listID returns a new id for a list request as the upstream gets it, so that its answer goes to that request alone:
// an upstream that sends a response to the latest request with its id (the TypeScript and Python SDKs' transports)
// would send a list's answer, unfiltered, to a call of the client's with the same id. 128 random bits: no client can
// send one of them in another request.
func listID() []byte { return []byte(`"mcp-gateway-list-` + rand.Text() + `"`) }

// outgoing is the body sent upstream: the messages as read, each list request with its fwdID in place of its id, and
// with rebatch, only the messages not dropped, as a batch.
func (ex *mcpExchange) outgoing(rebatch bool) []byte {
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
func (ex *mcpExchange) answerAll(answers [][]byte) *Error {
	e := &Error{Status: http.StatusOK, Code: "denied", Attrs: []slog.Attr{slog.String("policy", "deny")}}
	switch {
	case len(answers) == 0:
		e.Status, e.Code = http.StatusAccepted, ""
	case !ex.batch:
		e.JSONRPC = answers[0]
		if ex.version >= version20260728 {
			e.Status = http.StatusBadRequest
		}
	default:
		e.JSONRPC = joinArray(answers)
	}
	return e
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
