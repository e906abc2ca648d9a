package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Store holds the current policy of a file and replaces it when the file changes and still loads. Policy is safe
// for concurrent use and costs one atomic load.
type Store struct {
	path string
	cur  atomic.Pointer[Policy]

	mu   sync.Mutex // serializes loads
	seen fileState  // the version of the file last read, whether it loaded or not
	// pending is a changed version Watch saw once: it loads it only when the next look finds the same content, so
	// that a file read while it is being written (an editor or a copy writing in place) is never put in force.
	pending fileState
}

// fileState identifies a version of the file.
type fileState struct {
	info os.FileInfo // from the last look; nil when the file could not be read
	sum  [sha256.Size]byte
}

// racyWindow is how recent a modification time must be for Watch to read the file even though its size and time did
// not change: a file system with a coarse clock gives a second write within the same tick the same time.
const racyWindow = 2 * time.Second

// NewStore loads the policy at path. It fails, closed, when the file does not load: a gateway must not start without
// the policy it was given.
func NewStore(path string) (*Store, error) {
	s := &Store{path: path}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the policy file's path.
func (s *Store) Path() string { return s.path }

// Policy returns the current policy. Callers keep the one they got for the whole of a request, so that a request is
// decided by one policy.
func (s *Store) Policy() *Policy { return s.cur.Load() }

// Reload reads and parses the file again. When it loads, it becomes the current policy; when it does not, the
// previous policy stays current and the error says why.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := s.read()
	if err != nil {
		return err
	}
	return s.load(data)
}

// read reads the file and records its version as seen.
func (s *Store) read() ([]byte, error) {
	data, v, err := readVersion(s.path)
	s.seen, s.pending = v, fileState{}
	return data, err
}

// readVersion reads the file at path and returns its content and version (the zero version when it cannot be read).
func readVersion(path string) ([]byte, fileState, error) {
	fi, err := os.Stat(path)
	var data []byte
	if err == nil {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fileState{}, fmt.Errorf("read policy: %w", err)
	}
	return data, fileState{info: fi, sum: sha256.Sum256(data)}, nil
}

// load parses data and makes it current if it loads.
func (s *Store) load(data []byte) error {
	p, err := Parse(data, s.path)
	if err != nil {
		return err
	}
	s.cur.Store(p)
	return nil
}

// Watch polls the file every interval until ctx ends, and reloads it when it changed: another file (renamed over it),
// a new modification time or size, or a time too recent to tell, then a new content (SHA-256), so that touching the
// file reloads nothing; and when it has settled: a new content is loaded only once the next poll finds it again, so
// that a file caught half written (whose first rules may load without the requirements that follow) never is. onReload (which may be nil) is
// called after each reload with nil or the reason the new version was refused (the previous policy stays current);
// a version that does not load, or a file that cannot be read, is reported once, not at every poll. Watch needs no
// file-system notifications, so it follows files replaced by renames (editors, Kubernetes ConfigMap volumes).
func (s *Store) Watch(ctx context.Context, interval time.Duration, onReload func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if changed, err := s.poll(); changed && onReload != nil {
			onReload(err)
		}
	}
}

// poll reloads the file if it changed since it was last read and has settled (the same content at two looks in a
// row), and reports whether it changed (or became unreadable) and how the reload went.
func (s *Store) poll() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.seen
	if fi, err := os.Stat(s.path); err == nil && sameVersion(prev.info, fi) && time.Since(fi.ModTime()) > racyWindow {
		return false, nil
	}
	data, cur, err := readVersion(s.path)
	switch {
	case err != nil:
		s.seen, s.pending = fileState{}, fileState{}
		return prev.info != nil, err // reported when it becomes unreadable, not at every poll
	case prev.info != nil && cur.sum == prev.sum:
		s.seen, s.pending = cur, fileState{}
		return false, nil // the same content: touched, or replaced by a copy
	case s.pending.info == nil || cur.sum != s.pending.sum:
		s.pending = cur // changed, perhaps still being written: load it at the next look if it stays so
		return false, nil
	}
	s.seen, s.pending = cur, fileState{}
	return true, s.load(data)
}

// sameVersion reports whether b is the file a was, with the same time and size. a may be nil.
func sameVersion(a, b os.FileInfo) bool {
	return a != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}
