package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// maxListBody bounds what the gateway reads of a JSON answer it rewrites, and of one event of an event stream it
// filters: go-sdk's limit on one event, so that nothing a Go client would take is refused.
const maxListBody = 16 << 20

// Rewrites reports whether the upstream's answer has to pass through ModifyResponse: it holds list responses to
// filter, or the gateway's answers are to be merged into it. An answer that does must come uncompressed.
func (ex *Exchange) Rewrites() bool {
	return ex.resume || ex.answers != nil || ex.pendingLists() > 0
}

// pendingLists is the number of list requests forwarded whose response has not passed yet.
func (ex *Exchange) pendingLists() int {
	n := 0
	for i := range ex.msgs {
		if m := &ex.msgs[i]; m.list != nil && m.id != nil && !m.dropped && !m.listDone {
			n++
		}
	}
	return n
}

// ModifyResponse is the reverse proxy's ModifyResponse for the exchange: it records the status, and rewrites a 2xx
// answer that carries list responses or needs the gateway's answers merged in: an event stream event by event as it
// comes (sseFilter), a JSON answer whole (at most maxListBody). Other answers pass as the upstream wrote them; an
// error is one reading the answer, for the reverse proxy to answer 502.
func (ex *Exchange) ModifyResponse(resp *http.Response) error {
	ex.status = resp.StatusCode
	if !ex.Rewrites() || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil
	}
	h := resp.Header
	if ce := h.Get("Content-Encoding"); ce != "" && ce != "identity" {
		resp.Body.Close()
		ex.failPending()
		ex.replaceBody(resp, ex.assemble(nil, false))
		return nil
	}
	if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		h.Del("Content-Length")
		resp.ContentLength = -1
		resp.Body = newSSEFilter(resp.Body, ex)
		return nil
	}
	b, err := readAll(resp.Body, resp.ContentLength, maxListBody)
	resp.Body.Close()
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		ex.failPending()
		b = ex.assemble(nil, ex.batch)
	case err != nil:
		return err // the reverse proxy answers 502
	default:
		b = ex.rewriteJSON(b)
	}
	ex.replaceBody(resp, b)
	return nil
}

// replaceBody makes b the answer's body: a 200 JSON answer (202 and 204 carry none, so a gateway answer turns them
// into 200).
func (ex *Exchange) replaceBody(resp *http.Response, b []byte) {
	if resp.StatusCode != http.StatusOK && len(b) > 0 {
		resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
	}
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Del("Content-Encoding")
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	resp.ContentLength = int64(len(b))
	resp.Body = io.NopCloser(bytes.NewReader(b))
}

// rewriteJSON rewrites a JSON answer: each response as response decides, then the fail-closed errors and the
// gateway's answers. A body that is not JSON fails every pending list closed.
func (ex *Exchange) rewriteJSON(b []byte) []byte {
	if !json.Valid(b) {
		if len(bytes.TrimSpace(b)) > 0 || ex.pendingLists() > 0 {
			ex.failPending()
		}
		return ex.assemble(nil, ex.batch)
	}
	var out [][]byte
	i := skipSpace(b, 0)
	array := b[i] == '['
	if array {
		elements(b, func(s span) bool {
			if m, keep := ex.response(s.in(b), true); keep {
				out = append(out, m)
			}
			return true
		})
	} else if m, keep := ex.response(b[i:skipValue(b, i)], false); keep {
		out = append(out, m)
	}
	ex.failPending() // a list request the answer did not answer
	return ex.assemble(out, array || ex.batch)
}

// assemble returns the answer to send: the responses kept, the fail-closed errors and the gateway's answers; an array
// when asked for or when there is more than one.
func (ex *Exchange) assemble(kept [][]byte, array bool) []byte {
	all := append(append(kept, ex.failed...), ex.answers...)
	ex.failed, ex.answers = nil, nil
	switch {
	case len(all) == 0:
		return nil
	case len(all) == 1 && !array:
		return all[0]
	}
	return joinArray(all)
}

// failPending answers every list request still waiting with an internal error: the gateway could not filter its
// response, so the client gets none of it.
func (ex *Exchange) failPending() {
	for i := range ex.msgs {
		m := &ex.msgs[i]
		if m.list != nil && m.id != nil && !m.dropped && !m.listDone {
			ex.failed = append(ex.failed, ex.failList(m))
		}
	}
}

// failList marks m's response as passed and returns the error it gets instead.
func (ex *Exchange) failList(m *message) []byte {
	m.listDone, m.code = true, codeInternalError
	return rpcError(m.id, codeInternalError, "Internal error: the gateway could not filter the list", nil)
}

// keyIDs computes the keys the requests' ids match responses by (idKey), for an exchange that reads responses.
func (ex *Exchange) keyIDs() {
	for i := range ex.msgs {
		if m := &ex.msgs[i]; m.fwdID != nil {
			m.key, _ = idKey(m.fwdID)
		} else if m.id != nil {
			m.key, _ = idKey(m.id)
		}
	}
}

// find returns the request of the POST whose id matches key, or nil.
func (ex *Exchange) find(key string) *message {
	for i := range ex.msgs {
		if m := &ex.msgs[i]; m.method != "" && m.id != nil && m.key == key {
			return m
		}
	}
	return nil
}

// response decides what of one message of the upstream's answer (b, inArray when it came in an array) goes to the
// client: requests and notifications of the server pass; a response to a pending list request passes filtered, or
// as an error when it cannot be filtered; a response to no request of this POST, or a second one to a list request,
// is dropped; a message that cannot be read without ambiguity (members twice or in another case, a method with a
// result) is dropped and fails the pending lists closed. It reports false to drop the message.
func (ex *Exchange) response(b []byte, inArray bool) ([]byte, bool) {
	var v [6]span
	if _, err := members(b, msgKeys, v[:]); err != nil {
		ex.failPending()
		return nil, false
	}
	switch {
	case v[kMethod].ok() && (v[kResult].ok() || v[kError].ok()):
		ex.failPending() // a request to a Go client, a response to a TypeScript one
		return nil, false
	case v[kMethod].ok():
		return b, true
	}
	key, ok := idKey(v[kID].in(b))
	if !ok {
		return nil, false // a response to nothing
	}
	if ex.resume {
		return ex.filterByShape(b, v)
	}
	m := ex.find(key)
	switch {
	case m == nil, m.dropped:
		return nil, false
	case m.list == nil:
		return b, true
	case m.listDone:
		return nil, false
	}
	m.listDone = true
	switch {
	case inArray && !ex.batch, v[kResult].ok() == v[kError].ok():
		return ex.failList(m), true
	case v[kError].ok():
		return splice(b, edit{v[kID], m.id}), true
	}
	res := v[kResult].in(b)
	filtered, ok := ex.filterList(res, m.list, &m.itemsIn, &m.itemsOut)
	if !ok {
		return ex.failList(m), true
	}
	return splice(b, edit{v[kID], m.id}, edit{v[kResult], filtered}), true // the client's id back
}

// filterByShape filters a response replayed on a resumed stream, whose request the gateway did not see: a result
// that holds one of the lists is filtered as that list; one that holds several cannot be read one way and becomes an
// error.
func (ex *Exchange) filterByShape(b []byte, v [6]span) ([]byte, bool) {
	if !v[kResult].isObject(b) {
		return b, true
	}
	res := v[kResult].in(b)
	var s [4]span
	keys := []string{"tools", "prompts", "resources", "resourceTemplates"}
	if _, err := members(res, keys, s[:]); err != nil {
		return rpcError(v[kID].in(b), codeInternalError, "Internal error: the gateway could not filter the list", nil), true
	}
	var lk *listKind
	for i, sp := range s {
		if !sp.ok() {
			continue
		}
		if lk != nil {
			return rpcError(v[kID].in(b), codeInternalError, "Internal error: the gateway could not filter the list", nil), true
		}
		for _, k := range listKinds {
			if k.items == keys[i] {
				lk = k
			}
		}
	}
	if lk == nil {
		return b, true
	}
	var in, out int
	filtered, ok := ex.filterList(res, lk, &in, &out)
	if !ok {
		return rpcError(v[kID].in(b), codeInternalError, "Internal error: the gateway could not filter the list", nil), true
	}
	return splice(b, edit{v[kResult], filtered}), true
}

// filterList returns a list result without the items the caller may not use (policy.Deny; an item that does not name
// itself without ambiguity is dropped too), and with cacheScope "private" where the result has one or the protocol
// version requires it. The other members, pagination included, stay as they were. ok is false for a result that is
// not a list.
func (ex *Exchange) filterList(res []byte, lk *listKind, in, kept *int) (out []byte, ok bool) {
	var v [2]span
	closing, err := members(res, []string{lk.items, "cacheScope"}, v[:])
	if err != nil || !v[0].isArray(res) {
		return nil, false
	}
	items := v[0].in(res)
	arr := make([]byte, 0, len(items))
	arr = append(arr, '[')
	var name [1]span
	fields := []string{lk.field}
	for i := skipSpace(items, 1); i < len(items) && items[i] != ']'; { // one pass: an item ends where members ends
		*in++
		end, keep := 0, false
		if items[i] == '{' {
			name[0] = span{}
			if closing, err := members(items[i:], fields, name[:]); err == nil {
				end = i + closing + 1
				n, isString := name[0].str(items[i:])
				keep = isString && ex.policy.Decide(ex.facts, lk.kind, n).Outcome != policy.Deny
			}
		}
		if end == 0 {
			end = skipValue(items, i)
		}
		if keep {
			if *kept > 0 {
				arr = append(arr, ',')
			}
			arr = append(arr, items[i:end]...)
			*kept++
		}
		if i = skipSpace(items, end); i < len(items) && items[i] == ',' {
			i = skipSpace(items, i+1)
		}
	}
	arr = append(arr, ']')
	edits := []edit{{v[0], arr}}
	switch {
	case v[1].ok():
		edits = append(edits, edit{v[1], []byte(`"private"`)})
	case ex.version >= version20260728:
		edits = append(edits, edit{span{closing, closing}, []byte(`,"cacheScope":"private"`)})
	}
	return splice(res, edits...), true
}

// edit replaces what is at at with repl.
type edit struct {
	at   span
	repl []byte
}

// splice applies edits, in any order and not overlapping, to a copy of b.
func splice(b []byte, edits ...edit) []byte {
	if len(edits) == 2 && edits[1].at.start < edits[0].at.start {
		edits[0], edits[1] = edits[1], edits[0]
	}
	n := len(b)
	for _, e := range edits {
		n += len(e.repl) - (e.at.end - e.at.start)
	}
	out := make([]byte, 0, n)
	last := 0
	for _, e := range edits {
		out = append(out, b[last:e.at.start]...)
		out = append(out, e.repl...)
		last = e.at.end
	}
	return append(out, b[last:]...)
}
