package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"
)

// readRPC returns the first JSON-RPC message of a response: the body of application/json, or the data of the first
// event of text/event-stream, its data lines joined with "\n" as the event-stream format says.
func readRPC(resp *http.Response) ([]byte, error) {
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	body := io.LimitReader(resp.Body, 1<<20)
	switch ct {
	case "application/json":
		return io.ReadAll(body)
	case "text/event-stream":
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var data []string
		for sc.Scan() {
			line := sc.Text()
			if line == "" && len(data) > 0 {
				break
			}
			if name, value, _ := strings.Cut(line, ":"); name == "data" {
				data = append(data, strings.TrimPrefix(value, " "))
			}
		}
		if len(data) == 0 {
			return nil, errors.New("the event stream ended without a message")
		}
		return []byte(strings.Join(data, "\n")), nil
	default:
		return nil, fmt.Errorf("content type %q is neither application/json nor text/event-stream", ct)
	}
}

func TestReadRPC(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, contentType, body, want string
	}{
		{"JSON", "application/json", `{"id":1}`, `{"id":1}`},
		{"one data line", "text/event-stream", "event: message\ndata: {\"id\":1}\n\n", `{"id":1}`},
		{"data lines joined with a line feed", "text/event-stream", "data: {\"id\":\ndata:1}\n\ndata: {\"id\":2}\n\n", "{\"id\":\n1}"},
		{"no blank line at the end", "text/event-stream", "id: 7\ndata: {}", "{}"},
	} {
		resp := &http.Response{Header: http.Header{"Content-Type": {tt.contentType}}, Body: io.NopCloser(strings.NewReader(tt.body))}
		if got, err := readRPC(resp); err != nil || string(got) != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
