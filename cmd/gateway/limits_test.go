package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startPlain runs the gateway (startGateway) with a test issuer, in front of an upstream that answers 200 to
// everything, with env added to its configuration, and returns its host:port and its log.
func startPlain(t *testing.T, env map[string]string) (string, *logBuffer) {
	t.Helper()
	return startPlainWith(t, newIssuer(t), env)
}

// startPlainWith is startPlain with the issuer is, which several gateways can share.
func startPlainWith(t *testing.T, is *issuer, env map[string]string) (string, *logBuffer) {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	m := map[string]string{"GATEWAY_METRICS_ADDR": "off", "GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp"}
	for k, v := range env {
		m[k] = v
	}
	url, logs := startGateway(t, m)
	return strings.TrimPrefix(url, "http://"), logs
}

// TestMaxConnections checks that GATEWAY_MAX_CONNECTIONS caps the connections the gateway holds: with two held open by
// clients in the middle of a request, a third is not served until one of them goes, and is served then. It also
// checks that the gateway warns when it runs without an identity secret.
func TestMaxConnections(t *testing.T) {
	addr, logs := startPlain(t, map[string]string{"GATEWAY_MAX_CONNECTIONS": "2", "GATEWAY_READ_HEADER_TIMEOUT": "60s"})
	if !strings.Contains(logs.String(), `"max_connections":2`) {
		t.Errorf("max_connections not logged as 2; logs:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "GATEWAY_IDENTITY_SECRET is not set") {
		t.Error("no warning about the missing identity secret")
	}

	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	healthz := func(c net.Conn) <-chan error {
		errc := make(chan error, 1)
		go func() {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				errc <- err
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil && resp.StatusCode != 200 {
				err = io.ErrUnexpectedEOF
			}
			errc <- err
		}()
		return errc
	}
	// Two connections the gateway has accepted, each in the middle of sending a request (not idle: an idle
	// keep-alive connection gives its place up to a new one).
	first, second := dial(), dial()
	for _, c := range []net.Conn{first, second} {
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	}
	third := dial() // the kernel completes the handshake; the gateway does not accept it yet
	answered := healthz(third)
	select {
	case err := <-answered:
		t.Fatalf("a third connection was served with two open and a cap of two (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	first.Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("the third connection, once a place was free: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the third connection was not served after a place was freed")
	}
}

// TestConnectionCap checks the cap derived from GATEWAY_MAX_CONNECTIONS.
func TestConnectionCap(t *testing.T) {
	if got := connectionCap(7); got != 7 {
		t.Errorf("connectionCap(7): got %d", got)
	}
	if got := connectionCap(-1); got != 0 {
		t.Errorf("connectionCap(-1): got %d, want 0 (no cap)", got)
	}
	if files := openFileLimit(); files > 0 {
		if got, want := connectionCap(0), max(files-64, 32)/2; got != want {
			t.Errorf("connectionCap(0) with %d files: got %d, want %d", files, got, want)
		}
	}
}

// TestSilentBodiesDoNotTakeTheGatewayOffline repeats the attack of an anonymous client that opens many connections,
// each declaring a request body it never sends: every one is refused and closed at once, so the connections under
// the cap stay free and /healthz answers throughout.
func TestSilentBodiesDoNotTakeTheGatewayOffline(t *testing.T) {
	addr, _ := startPlain(t, map[string]string{"GATEWAY_MAX_CONNECTIONS": "50"})
	const attackers = 250
	var conns []net.Conn
	for range attackers {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// Every attacker is answered and its connection closed, long before the read timeout (30s).
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("attacker %d: connection not closed after its refusal: %v", i, err)
		}
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz after %d silent bodies: %v", attackers, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}
