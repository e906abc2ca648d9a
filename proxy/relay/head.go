package relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// errHeadTooLarge is the error OnError gets for an upstream head over MaxHeadBytes.
var errHeadTooLarge = errors.New("upstream response head too large")

// headReader reads the upstream's response head: until done is set it refuses to read more than left bytes and keeps
// a copy of what it read (raw), and after that it passes the body through untouched.
type headReader struct {
	r    io.Reader
	left int
	raw  []byte
	done bool
}

func (h *headReader) Read(p []byte) (int, error) {
	if h.done {
		return h.r.Read(p)
	}
	if h.left <= 0 {
		return 0, errHeadTooLarge
	}
	if len(p) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= n
	h.raw = append(h.raw, p[:n]...)
	return n, err
}

// readHead reads the answer to req from br, which reads hr, and returns it with its raw head. Informational answers
// (1xx) go to info and are not returned; a 101 is ErrUnaskedUpgrade. The raw head is kept because http.ReadResponse
// drops a Connection header that says close, and with it the names of the other hop-by-hop headers it lists.
func readHead(hr *headReader, br *bufio.Reader, req *http.Request, info func(*http.Response)) (*http.Response, []byte, error) {
	for {
		start := len(hr.raw) - br.Buffered()
		resp, err := http.ReadResponse(br, req)
		switch {
		case err != nil:
			return nil, nil, err
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, nil, ErrUnaskedUpgrade
		case resp.StatusCode < 200:
			info(resp)
			continue
		}
		head := hr.raw[start : len(hr.raw)-br.Buffered()]
		hr.done, hr.raw = true, nil
		return resp, head, nil
	}
}

// hopHeaders are the hop-by-hop headers, as listed by reverseproxy.go (Go 1.26).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade",
}

// removeHopByHop removes from h, the headers of an answer whose raw head is raw, the hop-by-hop headers and those
// named by its Connection header, as reverseproxy.go's removeHopByHopHeaders does (Go 1.26), and also those named in
// a Connection header that says close, which http.ReadResponse dropped from h (the reverse proxy passes those on:
// here the relay is stricter, as RFC 9110 section 7.6.1 asks).
func removeHopByHop(h http.Header, raw []byte) {
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), "Connection") {
			deleteListed(h, string(value))
		}
	}
	for _, f := range h["Connection"] {
		deleteListed(h, f)
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// deleteListed deletes from h the headers named in the comma-separated list.
func deleteListed(h http.Header, list string) {
	for name := range strings.SplitSeq(list, ",") {
		if name = textproto.TrimString(name); name != "" {
			h.Del(name)
		}
	}
}

// copyHeader adds every value of src to dst, as reverseproxy.go's copyHeader does (Go 1.26).
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

// trailerNames is the Trailer header reverseproxy.go announces for resp (Go 1.26): the names of the trailers the
// upstream announced.
func trailerNames(resp *http.Response) string {
	keys := make([]string, 0, len(resp.Trailer))
	for k := range resp.Trailer {
		keys = append(keys, k)
	}
	return strings.Join(keys, ", ")
}

// streamHead builds what the client is first sent of a 200 event stream relayed raw on its own connection: the headers
// already set for it (h: the request id, CORS), the upstream's (resp, hop-by-hop headers removed), the trailers
// announced as the reverse proxy announces them, the upstream's framing (chunked, its Content-Length as it wrote it,
// or none: until the connection closes), Connection: close and a Date; then the body bytes br read with the head, as received (with a
// length, no more than the body: bytes after it are not the client's). It returns that, how many body bytes it
// holds, and how many are still to come when the upstream gave a length (-1: until it closes).
func streamHead(h http.Header, resp *http.Response, br *bufio.Reader, now time.Time) (buf []byte, body int, left int64) {
	copyHeader(h, resp.Header)
	if len(resp.Trailer) > 0 {
		h.Add("Trailer", trailerNames(resp))
	}
	if len(resp.TransferEncoding) > 0 { // chunked: http.ReadResponse refuses any other
		h["Transfer-Encoding"] = []string{"chunked"}
	}
	h["Connection"] = []string{"close"}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{now.UTC().Format(http.TimeFormat)}
	}
	var b bytes.Buffer
	b.Grow(1024)
	b.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&b)
	b.WriteString("\r\n")
	// After a chunked body's last chunk the upstream closes the connection, as asked; anything it sends before that
	// reaches a client that was told the connection closes, and that has sent nothing more on it.
	rest, _ := br.Peek(br.Buffered())
	left = -1
	if resp.ContentLength >= 0 && len(resp.TransferEncoding) == 0 {
		rest = rest[:min(int64(len(rest)), resp.ContentLength)]
		left = resp.ContentLength - int64(len(rest))
	}
	b.Write(rest)
	return b.Bytes(), len(rest), left
}
