package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode"
)

// sseFilter passes an event stream from the upstream through the exchange, event by event, as it comes: nothing waits
// for the end of the stream, and each event is held only until its blank line (at most maxListBody).
//
// Readers of event streams differ (policy.md §4): line ends (LF, CRLF, a lone CR), white space around values (go-sdk
// trims Unicode spaces, eventsource-parser one leading space), a last event without its blank line. The filter reads
// a superset of them all and writes every event again in one form every reader reads alike: event:, id:, retry: and
// one data: line of compact JSON. So the client reads exactly what the gateway decided on. Comments pass at once;
// fields no reader uses are dropped. The gateway's answers to a batch's denied requests come first, as events of
// their own.
type sseFilter struct {
	src  io.ReadCloser
	ex   *Exchange
	buf  []byte // what was read from src
	line []byte // the line being read
	ev   sseEvent
	out  []byte // written, waiting to be read
	off  int    // what of out was read
	err  error  // src's error, returned once out is read
	cr   bool   // the last byte read was a CR: a LF right after it ends no other line
	size int    // bytes of the event being read
	bom  bool   // the start of the stream was checked for a byte order mark
	done bool   // an event over the limit ended the stream

	compact bytes.Buffer
}

// eventMessage names the events the gateway adds.
var eventMessage = []byte("message")

// sseEvent is an event being read.
type sseEvent struct {
	name, id, retry []byte
	data            []byte
	hasData, any    bool
}

func newSSEFilter(src io.ReadCloser, ex *Exchange) *sseFilter {
	f := &sseFilter{src: src, ex: ex, buf: make([]byte, 4<<10)}
	for _, a := range ex.answers {
		f.writeEvent(eventMessage, nil, nil, a)
	}
	ex.answers = nil
	return f
}

func (f *sseFilter) Read(p []byte) (int, error) {
	for f.off == len(f.out) && f.err == nil {
		f.out, f.off = f.out[:0], 0
		n, err := f.src.Read(f.buf)
		f.feed(f.buf[:n])
		if err != nil && f.err == nil {
			f.endLine() // a last line and event without their ends count, as go-sdk reads them
			f.dispatch()
			f.err = err
		}
	}
	if f.off < len(f.out) {
		n := copy(p, f.out[f.off:])
		f.off += n
		return n, nil
	}
	return 0, f.err
}

func (f *sseFilter) Close() error { return f.src.Close() }

// feed reads b into lines.
func (f *sseFilter) feed(b []byte) {
	for len(b) > 0 && !f.done {
		if f.cr {
			f.cr = false
			if b[0] == '\n' {
				b = b[1:]
				continue
			}
		}
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			f.take(b)
			return
		}
		f.take(b[:i])
		f.cr = b[i] == '\r'
		b = b[i+1:]
		f.endLine()
	}
}

// take adds b to the line being read, within the limit on an event.
func (f *sseFilter) take(b []byte) {
	if f.size+len(f.line)+len(b) > maxListBody {
		f.overflow()
		return
	}
	f.line = append(f.line, b...)
}

// overflow ends the stream at an event over the limit: the lists still pending fail closed.
func (f *sseFilter) overflow() {
	f.ex.failPending()
	f.writeFailed()
	f.done, f.err = true, io.EOF
	f.line, f.ev = nil, sseEvent{}
}

// endLine handles a complete line.
func (f *sseFilter) endLine() {
	if f.done {
		return
	}
	line := f.line
	f.line = f.line[:0]
	if !f.bom {
		f.bom = true
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	f.size += len(line) + 1
	switch {
	case len(line) == 0:
		f.dispatch()
		return
	case line[0] == ':':
		f.out = append(append(f.out, line...), '\n')
		return
	}
	name, value, found := bytes.Cut(line, []byte{':'})
	if found && len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	ev := &f.ev
	switch string(name) {
	case "data":
		if ev.hasData {
			ev.data = append(ev.data, '\n')
		}
		ev.data = append(ev.data, value...)
		ev.hasData = true
	case "event":
		ev.name = append(ev.name[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			ev.id = append(ev.id[:0], value...)
		}
	case "retry":
		ev.retry = append(ev.retry[:0], value...)
	default:
		return
	}
	ev.any = true
}

// dispatch handles a complete event.
func (f *sseFilter) dispatch() {
	ev := &f.ev
	defer func() {
		ev.name, ev.id, ev.retry, ev.data = ev.name[:0], ev.id[:0], ev.retry[:0], ev.data[:0]
		ev.hasData, ev.any = false, false
		f.size = 0
	}()
	if !ev.any {
		return
	}
	if !ev.hasData {
		f.writeEvent(ev.name, ev.id, ev.retry, nil)
		return
	}
	d := bytes.TrimFunc(ev.data, unicode.IsSpace)
	switch {
	case len(d) == 0:
		f.writeEvent(ev.name, ev.id, ev.retry, []byte{})
	case json.Valid(d):
		if msg, keep := f.ex.messages(d); keep {
			f.writeEvent(ev.name, ev.id, ev.retry, msg)
		}
	case f.ex.pendingLists() > 0 || f.ex.resume:
		f.ex.failPending() // what a lenient reader could take for the list response is not sent
	default:
		f.writeEvent(ev.name, ev.id, ev.retry, ev.data)
	}
	f.writeFailed()
}

// writeFailed writes the fail-closed errors waiting.
func (f *sseFilter) writeFailed() {
	for _, e := range f.ex.failed {
		f.writeEvent(eventMessage, nil, nil, e)
	}
	f.ex.failed = nil
}

// writeEvent writes an event in the one form: data, when it is JSON, as one line of compact JSON; other data as one
// data: line per line; nil data writes no data: line.
func (f *sseFilter) writeEvent(name, id, retry, data []byte) {
	field := func(k string, v []byte) {
		f.out = append(f.out, k...)
		f.out = append(f.out, ": "...)
		f.out = append(f.out, v...)
		f.out = append(f.out, '\n')
	}
	if len(name) > 0 {
		field("event", name)
	}
	if len(id) > 0 {
		field("id", id)
	}
	if len(retry) > 0 {
		field("retry", retry)
	}
	if data != nil {
		f.compact.Reset()
		if json.Valid(data) && json.Compact(&f.compact, data) == nil {
			field("data", f.compact.Bytes())
		} else {
			for l := range bytes.SplitSeq(data, []byte{'\n'}) {
				field("data", l)
			}
		}
	}
	f.out = append(f.out, '\n')
}

// messages decides what of one event's JSON (a message, or an array of them) goes to the client; false drops the
// event.
func (ex *Exchange) messages(d []byte) ([]byte, bool) {
	switch d[0] {
	case '{':
		return ex.response(d, false)
	case '[':
		var kept [][]byte
		elements(d, func(s span) bool {
			if m, keep := ex.response(s.in(d), true); keep {
				kept = append(kept, m)
			}
			return true
		})
		if len(kept) == 0 {
			return nil, false
		}
		return joinArray(kept), true
	}
	if ex.pendingLists() > 0 || ex.resume {
		ex.failPending()
		return nil, false
	}
	return d, true
}
