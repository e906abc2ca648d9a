package main

import (
	"strings"
	"sync"
	"testing"
)

type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
	n  int
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.b.Write(p)
}

func TestLineBatcherKeepsEveryLineWhole(t *testing.T) {
	t.Parallel()
	out := &syncBuilder{}
	b := newLineBatcher(out)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				b.Write([]byte(strings.Repeat(string(rune('a'+g)), 20+i%50) + "\n"))
			}
		}()
	}
	wg.Wait()
	b.Close()
	lines := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
	if len(lines) != 8000 {
		t.Fatalf("lines: got %d, want 8000", len(lines))
	}
	for _, l := range lines {
		if strings.Trim(l, l[:1]) != "" {
			t.Fatalf("a line was split or interleaved: %q", l)
		}
	}
	if out.n >= 8000 {
		t.Errorf("writes to the destination: got %d for 8000 lines, want batches", out.n)
	}
}
