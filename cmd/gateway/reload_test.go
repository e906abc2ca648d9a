package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy"
)

// TestReloadOnHangup: each SIGHUP reloads the policy; without a policy, it says so.
func TestReloadOnHangup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal)
	var mu sync.Mutex
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &logs, mu: &mu}, nil))
	reloads := 0
	var err error = proxy.ErrNoPolicy
	done := make(chan struct{})
	go func() { defer close(done); reloadOnHangup(ctx, hup, func() error { reloads++; return err }, log) }()
	hup <- syscall.SIGHUP
	hup <- syscall.SIGHUP // the second send waits for the first to be handled
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reloadOnHangup did not return when its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if reloads != 2 || !strings.Contains(logs.String(), "no policy to reload") {
		t.Fatalf("reloads %d, log %q", reloads, logs.String())
	}
}

type syncWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
