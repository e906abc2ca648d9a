package main

import (
	"io"
	"sync"
	"time"
)

// lineBatcher collects log lines and writes them in batches, at most flushEvery apart or as soon as batchBytes are
// waiting, so that the access log costs no system call per request. slog writes whole lines, which are never split.
// Lines still waiting when the process dies are lost: at most flushEvery's worth.
type lineBatcher struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	stop chan struct{}
	done chan struct{}
}

const (
	flushEvery = 100 * time.Millisecond
	batchBytes = 32 << 10
)

// newLineBatcher starts a batcher writing to w. Close flushes and stops it.
func newLineBatcher(w io.Writer) *lineBatcher {
	b := &lineBatcher{w: w, buf: make([]byte, 0, batchBytes), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.mu.Lock()
				b.flushLocked()
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *lineBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= batchBytes {
		b.flushLocked()
	}
	return len(p), nil
}

func (b *lineBatcher) flushLocked() {
	if len(b.buf) > 0 {
		b.w.Write(b.buf) // a log destination that fails has nowhere to report it
		b.buf = b.buf[:0]
	}
}

// Close writes what is waiting and stops the batcher.
func (b *lineBatcher) Close() error {
	close(b.stop)
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return nil
}
