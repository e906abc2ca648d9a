package authz

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// AuditLog writes one JSON line per MCP message the gateway decided on (GATEWAY_AUDIT_LOG): who, what, the decision
// and the rule that made it, written as decided (never inferred from a status), and how the upstream answered. It
// never records arguments or results; with HashArguments, a SHA-256 of a call's arguments as sent.
//
// Writing never holds a request: events go through a bounded queue to one writer goroutine, which writes them in
// batches. When the queue is full (the destination is slower than the requests, or stuck), new events are dropped
// and counted (mcp_gateway_audit_dropped_total) rather than waited for.
type AuditLog struct {
	w       io.Writer
	file    *auditFile // the file w is, when it is one: Reopen opens it again
	issuer  string
	hash    bool
	now     func() time.Time
	dropped func()

	queue  chan *[]byte
	queued atomic.Int64 // bytes of the lines in queue
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	lines  sync.Pool
}

// AuditOptions configure NewAuditLog.
type AuditOptions struct {
	// Issuer is the iss of every event: the gateway accepts tokens of one issuer.
	Issuer string
	// HashArguments records the SHA-256 of a call's arguments (GATEWAY_AUDIT_ARGUMENTS=hash).
	HashArguments bool
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Queue is how many events may wait to be written before new ones are dropped; 0: 8192.
	Queue int
	// Dropped is called for each event dropped; nil: none.
	Dropped func()
}

// NewAuditLog starts an audit log writing to w. Close flushes and stops it.
func NewAuditLog(w io.Writer, o AuditOptions) *AuditLog {
	a := &AuditLog{w: w, issuer: o.Issuer, hash: o.HashArguments, now: o.Now, dropped: o.Dropped,
		queue: make(chan *[]byte, cmp.Or(o.Queue, 8192)), stop: make(chan struct{}), done: make(chan struct{})}
	if a.now == nil {
		a.now = time.Now
	}
	if a.dropped == nil {
		a.dropped = func() {}
	}
	a.lines.New = func() any { b := make([]byte, 0, 512); return &b }
	go a.run()
	return a
}

// Close writes the events waiting and stops the writer. Events sent after it are dropped.
func (a *AuditLog) Close() {
	a.once.Do(func() { close(a.stop) })
	<-a.done
}

// auditQueueBytes bounds the bytes of the events waiting, beside the number of them: an event holds names and ids as
// long as a client chose to send them.
const auditQueueBytes = 16 << 20

// auditLinePooled is the largest line buffer kept for reuse: a long line's buffer is left to the garbage collector.
const auditLinePooled = 64 << 10

// auditBatch is how much the writer collects into one write; auditEvery is how long events wait for the writer at
// most. The writer wakes up on its own rather than for each event, so that sending one costs a request no wake-up:
// the queue holds a flush interval's worth of events at 400,000 a second.
const (
	auditBatch = 32 << 10
	auditEvery = 20 * time.Millisecond
)

func (a *AuditLog) run() {
	defer close(a.done)
	batch := make([]byte, 0, auditBatch+4<<10)
	t := time.NewTicker(auditEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-a.stop:
			a.drain(batch)
			return
		}
		a.drain(batch)
	}
}

// drain writes the events waiting, in batches.
func (a *AuditLog) drain(batch []byte) {
	for {
		select {
		case l := <-a.queue:
			a.w.Write(a.collect(batch[:0], l)) // a destination that fails has nowhere to report it
		default:
			return
		}
	}
}

// collect appends l and the lines waiting after it, up to a batch.
func (a *AuditLog) collect(batch []byte, l *[]byte) []byte {
	for {
		batch = append(batch, *l...)
		a.queued.Add(-int64(len(*l)))
		a.free(l)
		if len(batch) >= auditBatch {
			return batch
		}
		select {
		case l = <-a.queue:
		default:
			return batch
		}
	}
}

// send queues a line, or drops it when the queue is full (in events or in bytes) or the log closed.
func (a *AuditLog) send(l *[]byte) {
	select {
	case <-a.stop:
		a.dropped()
		return
	default:
	}
	n := int64(len(*l))
	if a.queued.Add(n) > auditQueueBytes {
		a.queued.Add(-n)
		a.free(l)
		a.dropped()
		return
	}
	select {
	case a.queue <- l:
	default:
		a.queued.Add(-n)
		a.free(l)
		a.dropped()
	}
}

// free returns a line's buffer to the pool, unless it is too large to keep.
func (a *AuditLog) free(l *[]byte) {
	if cap(*l) <= auditLinePooled {
		a.lines.Put(l)
	}
}

// Request is what an audit event says of the request that carried the messages.
type Request struct {
	ID       string    // the gateway's request id, as in the access line
	Session  string    // the upstream's Mcp-Session-Id; "" for none
	Subject  string    // the verified caller (enduser.id)
	ClientID string    // the client the token was issued to
	OrgID    string    // the caller's organization; "" for none
	Start    time.Time // when the request arrived: the events' duration_ms run from it
}

// Write writes the audit events of the messages of ex once the request has ended: one per message the client sent
// (its answers to requests of the server's have none), with status, the upstream's (0: not forwarded; a message the
// gateway answered itself has none). A POST refused before its messages were decided (not JSON-RPC, headers that
// disagree with the body) has none: its access line says why.
func (a *AuditLog) Write(ex *Exchange, req *Request, status int) {
	if !ex.decided {
		return
	}
	d := a.now().Sub(req.Start)
	for i := range ex.msgs {
		m := &ex.msgs[i]
		if m.method == "" {
			continue // the client's answer to a request of the server's
		}
		s := status
		if m.dropped {
			s = 0
		}
		a.event(req, ex, m, s, d)
	}
}

// event writes the event of message m of the request req (status: the upstream's, 0 when it was not forwarded).
func (a *AuditLog) event(req *Request, ex *Exchange, m *message, status int, d time.Duration) {
	a.send(a.line(req, ex, m, status, d))
}

// line is the event's JSON line, in a buffer of the pool.
func (a *AuditLog) line(req *Request, ex *Exchange, m *message, status int, d time.Duration) *[]byte {
	bp := a.lines.Get().(*[]byte)
	b := append((*bp)[:0], `{"time":"`...)
	b = a.now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","request_id":`...)
	b = appendJSONString(b, req.ID)
	b = appendField(b, "mcp.method.name", m.method)
	if m.id != nil {
		id, ok := decodeString(span{0, len(m.id)}, m.id)
		if !ok {
			id = string(m.id)
		}
		b = appendField(b, "jsonrpc.request.id", id)
	}
	b = appendField(b, "mcp.protocol.version", ex.version)
	b = appendField(b, "mcp.session.id", req.Session)
	if m.kind != "" {
		b = appendField(b, nameField[m.kind], m.name)
	}
	b = appendField(b, "enduser.id", req.Subject)
	b = appendField(b, "client_id", req.ClientID)
	b = appendField(b, "org_id", req.OrgID)
	b = appendField(b, "iss", a.issuer)
	b = a.appendDecision(b, m)
	if m.list != nil && m.listDone && m.code == 0 {
		b = append(b, `,"items_in":`...)
		b = strconv.AppendInt(b, int64(m.itemsIn), 10)
		b = append(b, `,"items_out":`...)
		b = strconv.AppendInt(b, int64(m.itemsOut), 10)
	}
	if a.hash && m.args != nil {
		sum := sha256.Sum256(m.args)
		b = append(b, `,"arguments_sha256":"`...)
		b = hex.AppendEncode(b, sum[:])
		b = append(b, '"')
	}
	if status > 0 {
		b = append(b, `,"http.response.status_code":`...)
		b = strconv.AppendInt(b, int64(status), 10)
	}
	if m.code != 0 {
		b = append(b, `,"rpc.response.status_code":`...)
		b = strconv.AppendInt(b, int64(m.code), 10)
	}
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
	b = append(b, "}\n"...)
	*bp = b
	return bp
}

// appendDecision writes the decision as made: the outcome, the rule, and for a step-up the scopes challenged for. A
// message that names nothing is allowed without a rule.
func (a *AuditLog) appendDecision(b []byte, m *message) []byte {
	if !m.decided {
		return append(b, `,"decision":"allow"`...)
	}
	b = appendField(b, "decision", string(m.decision.Outcome))
	b = appendField(b, "security_rule.name", m.decision.Rule)
	if m.decision.Outcome == policy.StepUp {
		b = append(b, `,"scopes_required":[`...)
		for i, s := range m.decision.Scopes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		b = append(b, ']')
	}
	return b
}

// nameField is the member that holds what a message names, by kind (OpenTelemetry's MCP names).
var nameField = map[policy.Kind]string{policy.Tool: "gen_ai.tool.name", policy.Prompt: "gen_ai.prompt.name",
	policy.Resource: "mcp.resource.uri"}

// appendField appends ,"key":"value", or nothing for an empty value.
func appendField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

// OpenAuditLog starts an audit log writing to dest (GATEWAY_AUDIT_LOG): nil for "off", stderr (os.Stderr when nil)
// for "stderr", else the file dest, created if need be and appended to (Reopen opens it again). The returned close
// flushes the log and closes the file. The error is the file's that could not be opened.
func OpenAuditLog(dest string, stderr io.Writer, o AuditOptions) (*AuditLog, func(), error) {
	switch dest {
	case "off":
		return nil, func() {}, nil
	case "stderr":
		if stderr == nil {
			stderr = os.Stderr
		}
		a := NewAuditLog(stderr, o)
		return a, a.Close, nil
	}
	f, err := openAuditFile(dest)
	if err != nil {
		return nil, nil, err
	}
	a := NewAuditLog(f, o)
	a.file = f
	return a, func() {
		a.Close()
		f.close()
	}, nil
}

// Reopen opens the audit log's file again, by its name, and writes the events that follow there: after a log
// rotation renamed the file, events go to a new one. The file open until then is closed once the events already
// written to it are. It does nothing for an audit log that is not a file; when the file cannot be opened, the events
// keep going to the one open, and the error says why.
func (a *AuditLog) Reopen() error {
	if a == nil || a.file == nil {
		return nil
	}
	return a.file.reopen()
}

// auditFile is an audit log's file, which Reopen replaces.
type auditFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openAuditFile(path string) (*auditFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &auditFile{path: path, f: f}, nil
}

func (a *auditFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Write(p)
}

func (a *auditFile) reopen() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("reopen audit log: %w", err)
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	return old.Close()
}

func (a *auditFile) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.f.Close()
}
