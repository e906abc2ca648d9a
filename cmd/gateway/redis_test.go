package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/redisstore/redistest"
)

// TestGatewaysShareRedis runs two gateway processes' run functions on one redis-server: one request budget per user
// across them, the password of GATEWAY_REDIS_URL never in their logs, and through a Redis restart every request
// answered within the bound and /readyz ready throughout, saying whether Redis is up, and up again by itself.
func TestGatewaysShareRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	is := newIssuer(t)
	env := map[string]string{"GATEWAY_REDIS_URL": "redis://:hunter2secret@" + srv.Addr + "/1", "GATEWAY_RATE_LIMIT_USER": "1/m,burst=3"}
	a, logsA := startPlainWith(t, is, env)
	b, logsB := startPlainWith(t, is, env)
	alice, bob := is.token(t, "alice", nil), is.token(t, "bob", nil)
	post := func(addr, tok string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+tok)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if took := time.Since(start); took > time.Second {
			t.Errorf("a request took %s", took)
		}
		return resp.StatusCode
	}
	for i, want := range []int{200, 200, 200, 429, 429} {
		if got := post([]string{a, b}[i%2], alice); got != want {
			t.Errorf("alice's request %d, alternating replicas: got %d, want %d (one budget of 3)", i+1, got, want)
		}
	}
	for name, logs := range map[string]*logBuffer{"a": logsA, "b": logsB} {
		if s := logs.String(); strings.Contains(s, "hunter2secret") || !strings.Contains(s, "state shared by replicas through Redis") {
			t.Errorf("gateway %s: want the Redis start line and no password in the log:\n%s", name, s)
		}
	}
	readyz := func(addr string) (int, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct{ Redis string }
		json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc.Redis
	}

	srv.Stop()
	for i := range 3 {
		if got := post(a, bob); got != 200 {
			t.Errorf("bob's request %d while Redis is down: got %d, want 200 (this replica's memory)", i+1, got)
		}
	}
	if code, r := readyz(a); code != 200 || r != "down" {
		t.Errorf("/readyz while Redis is down: got %d, redis %q; want 200, down", code, r)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range []string{a, b} {
		for code, r := readyz(addr); r != "up"; code, r = readyz(addr) {
			if code != 200 || time.Now().After(deadline) {
				t.Fatalf("/readyz after Redis restarted: got %d, redis %q", code, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
