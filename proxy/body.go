package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// boundBody gives a client timeout to send each part of its request body: every read of the body must complete
// within it, and the read deadline is cleared once the body is read, so that the response (an event stream, say) is
// not cut by it. Without it a client that declares a body and sends none holds a connection, a goroutine and a file
// descriptor for as long as it likes. Only the gateway's own reads count: while it waits for the upstream to take
// what it read, the client is not blamed. A request without a body is not touched.
func boundBody(timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw, ok := w.(*statusWriter)
			if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || !ok || sw.conn == nil {
				next.ServeHTTP(w, r) // no body, or a connection without deadlines (a test recorder)
				return
			}
			b := &deadlineBody{ReadCloser: r.Body, conn: sw.conn, timeout: timeout, left: r.ContentLength}
			sw.st.body = b
			r.Body = b
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody is a request body under boundBody's deadline.
type deadlineBody struct {
	io.ReadCloser
	conn     connDeadlines
	timeout  time.Duration
	until    time.Time   // the read deadline last set
	left     int64       // bytes still to come when the length is known; -1 when it is not
	done     atomic.Bool // read to its end: the deadline is cleared
	timedOut atomic.Bool // a read hit the deadline; the server then cancels the request's context too
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return b.ReadCloser.Read(p)
	}
	if now := time.Now(); b.until.Sub(now) < b.timeout/2 {
		b.until = now.Add(b.timeout)
		b.conn.SetReadDeadline(b.until)
	}
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	switch {
	case err == nil && b.left == 0, errors.Is(err, io.EOF):
		b.done.Store(true)
		b.conn.SetReadDeadline(time.Time{})
	case err != nil:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			b.timedOut.Store(true)
			return n, errBodyTimeout
		}
	}
	return n, err
}

// LimitBody refuses a body declared larger than the limit at once and cuts one that grows past it.
func LimitBody(max int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > max {
				writeError(w, r, errTooLarge)
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, max)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// errTooLarge refuses a body declared larger than the limit.
var errTooLarge = &Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large", Description: "the request body is too large"}
