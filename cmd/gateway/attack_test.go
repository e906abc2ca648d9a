package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Attacks on the served gateway's connection cap by anonymous parties.

// capGateway runs the gateway with a connection cap of one and short timeouts, and returns its address.
func capGateway(t *testing.T) string {
	t.Helper()
	addr, _ := startPlain(t, map[string]string{
		"GATEWAY_MAX_CONNECTIONS": "1", "GATEWAY_READ_HEADER_TIMEOUT": "200ms", "GATEWAY_READ_TIMEOUT": "200ms",
		"GATEWAY_WRITE_TIMEOUT": "200ms", "GATEWAY_SHUTDOWN_TIMEOUT": "1s",
	})
	return addr
}

// served reports whether a fresh client gets /healthz answered within d.
func served(addr string, d time.Duration) error {
	c := &http.Client{Timeout: d, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// TestAttackIdleKeepAliveHoldsTheCap: an anonymous client makes one request (here /healthz; a 401 does the same) and
// keeps the connection idle. The server keeps idle connections for two minutes, but at the cap the one idle the
// longest gives its place to a new connection.
func TestAttackIdleKeepAliveHoldsTheCap(t *testing.T) {
	addr := capGateway(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := served(addr, 3*time.Second); err != nil {
		t.Errorf("with one idle keep-alive connection (cap 1, timeouts 200ms), another client was not served within 3s: %v", err)
	}
}

// TestAttackSlowReaderHoldsTheCap: an anonymous client pipelines requests and never reads the answers. Once the
// socket buffers are full the handler blocks in Write, which GATEWAY_WRITE_TIMEOUT bounds: the connection, and its
// place under the cap, is given up.
func TestAttackSlowReaderHoldsTheCap(t *testing.T) {
	addr := capGateway(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		req := strings.Repeat("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 1000)
		for range 40 { // 40,000 answers of about 200 bytes: more than the socket buffers hold, answered in well under 3s
			if _, err := io.WriteString(c, req); err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second) // let the buffers fill: 5× every configured timeout
	if err := served(addr, 3*time.Second); err != nil {
		t.Errorf("with one connection that does not read (cap 1, timeouts 200ms), another client was not served within 4s of it: %v", err)
	}
}
