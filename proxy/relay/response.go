package relay

import (
	"io"
	"net/http"
)

// writeResponse passes resp, whose hop-by-hop headers are removed, back through w as reverseproxy.go's ServeHTTP does
// after its round trip (Go 1.26): the headers and the announced trailers' names, the body flushed as it comes when it
// is an event stream or of unknown length, the response aborted when the copy fails halfway,
// and the trailers after the body.
func (rl *Relay) writeResponse(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	defer resp.Body.Close()
	if isEventStream(resp.Header) && rl.o.OnStream != nil {
		ended := rl.o.OnStream(r, false)
		defer ended(0)
	}
	h := w.Header()
	copyHeader(h, resp.Header)
	announced := len(resp.Trailer)
	if announced > 0 {
		h.Add("Trailer", trailerNames(resp))
	}
	w.WriteHeader(resp.StatusCode)
	// reverseproxy.go flushes event streams and bodies of unknown length after every write, and the head from a
	// timer started with the copy, which mostly fires after the first write (so that the server still sniffs a
	// missing Content-Type). Here the head of an event stream goes at once, any other with the first write.
	if isEventStream(resp.Header) {
		http.NewResponseController(w).Flush()
	}
	flush := isEventStream(resp.Header) || resp.ContentLength == -1
	if err := rl.copyBody(w, resp.Body, flush); err != nil {
		panic(http.ErrAbortHandler) // the client must not take a cut body for a whole one
	}
	resp.Body.Close() // now, to fill resp.Trailer
	if len(resp.Trailer) > 0 {
		http.NewResponseController(w).Flush() // chunked, so that the trailers can follow
	}
	if len(resp.Trailer) == announced {
		copyHeader(h, resp.Trailer)
		return
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// copyBody copies body to w, flushing after every write when flush is set, and returns the first write error or
// read error other than io.EOF.
func (rl *Relay) copyBody(w http.ResponseWriter, body io.Reader, flush bool) error {
	rc := http.NewResponseController(w)
	buf := rl.buffers.Get()
	defer rl.buffers.Put(buf)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				rc.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
