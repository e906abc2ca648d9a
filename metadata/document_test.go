package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects log output written from the fetch goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Upstream behaviours.
const (
	serveV1 int32 = iota
	serveV2
	serve500
	serveHTML
	serveArray
	serveBlock // until the request or the test ends
)

const (
	docV1 = `{"issuer":"https://as.example","v":1}`
	docV2 = `{"issuer":"https://as.example","v":2}`
)

// upstream is an httptest server whose behaviour the test switches, counting the requests it gets.
type upstream struct {
	srv  *httptest.Server
	mode atomic.Int32
	hits atomic.Int32
}

func newUpstream(t *testing.T, mode int32) *upstream {
	t.Helper()
	u := &upstream{}
	u.mode.Store(mode)
	testDone := t.Context().Done()
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		switch u.mode.Load() {
		case serveV1:
			w.Write([]byte(docV1))
		case serveV2:
			w.Write([]byte(docV2))
		case serve500:
			http.Error(w, "upstream secret "+bodyMarker, http.StatusInternalServerError)
		case serveHTML:
			w.Write([]byte("<html>" + bodyMarker + "</html>"))
		case serveArray:
			w.Write([]byte(`["` + bodyMarker + `"]`))
		case serveBlock:
			select {
			case <-testDone:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

type docSetup struct {
	doc   *Document
	clock *fakeClock
	logs  *logBuffer
}

const (
	testTTL   = time.Minute
	testRetry = 10 * time.Second
)

func newTestDocument(u *upstream, timeout time.Duration) docSetup {
	s := docSetup{clock: newFakeClock(), logs: &logBuffer{}}
	s.doc = NewDocument(DocumentOptions{
		URL:           u.srv.URL + "/.well-known/oauth-authorization-server",
		Client:        u.srv.Client(),
		TTL:           testTTL,
		Timeout:       timeout,
		RetryInterval: testRetry,
		Now:           s.clock.Now,
		Logger:        slog.New(slog.NewTextHandler(s.logs, nil)),
	})
	return s
}

// get calls Get and checks the body.
func get(t *testing.T, d *Document, want string) {
	t.Helper()
	got, err := d.Get(t.Context())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got) != want {
		t.Fatalf("Get: got %s, want %s", got, want)
	}
}

func wantHits(t *testing.T, u *upstream, want int32) {
	t.Helper()
	if got := u.hits.Load(); got != want {
		t.Fatalf("upstream requests: got %d, want %d", got, want)
	}
}

func TestDocumentServedFromCache(t *testing.T) {
	t.Parallel()
	t.Run("fetched", func(t *testing.T) {
		t.Parallel()
		u := newUpstream(t, serveV1)
		s := newTestDocument(u, time.Second)
		for range 3 {
			get(t, s.doc, docV1)
			s.clock.Advance(testTTL / 4)
		}
		wantHits(t, u, 1)
	})
	t.Run("seeded", func(t *testing.T) {
		t.Parallel()
		u := newUpstream(t, serveV2)
		s := newTestDocument(u, time.Second)
		seed := []byte(docV1)
		s.doc.Seed(seed)
		seed[0] = '[' // Seed copies
		get(t, s.doc, docV1)
		s.clock.Advance(testTTL - time.Nanosecond)
		get(t, s.doc, docV1)
		wantHits(t, u, 0)
	})
}

func TestDocumentRefreshAfterTTL(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, serveV1)
	s := newTestDocument(u, time.Second)
	get(t, s.doc, docV1)
	u.mode.Store(serveV2)
	s.clock.Advance(testTTL - time.Nanosecond)
	get(t, s.doc, docV1)
	wantHits(t, u, 1)

	s.clock.Advance(time.Nanosecond)
	get(t, s.doc, docV2)
	wantHits(t, u, 2)
	get(t, s.doc, docV2)
	wantHits(t, u, 2)
}

func TestDocumentServesStale(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mode    int32
		wantErr func(error) bool
	}{
		{"status 500", serve500, func(err error) bool { var se *StatusError; return errors.As(err, &se) }},
		{"not JSON", serveHTML, func(err error) bool { return errors.Is(err, ErrNotJSON) }},
		{"JSON array", serveArray, func(err error) bool { return errors.Is(err, ErrNotJSON) }},
		{"timeout", serveBlock, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t, serveV1)
			s := newTestDocument(u, 50*time.Millisecond)
			get(t, s.doc, docV1)

			u.mode.Store(tt.mode)
			s.clock.Advance(testTTL)
			get(t, s.doc, docV1)
			wantHits(t, u, 2)
			logs := s.logs.String()
			if !strings.Contains(logs, "url="+u.srv.URL+"/.well-known/oauth-authorization-server") {
				t.Errorf("log %q does not name the URL", logs)
			}
			if strings.Contains(logs, bodyMarker) {
				t.Errorf("log %q contains the upstream body", logs)
			}

			// Within the retry interval the stale copy is served without asking again.
			s.clock.Advance(testRetry - time.Nanosecond)
			get(t, s.doc, docV1)
			wantHits(t, u, 2)

			// Then the upstream is asked again; still failing, still stale.
			s.clock.Advance(time.Nanosecond)
			get(t, s.doc, docV1)
			wantHits(t, u, 3)

			// Once it recovers, the new copy replaces the stale one.
			u.mode.Store(serveV2)
			s.clock.Advance(testRetry)
			get(t, s.doc, docV2)
			wantHits(t, u, 4)

			// With no copy, the cause is returned.
			empty := newTestDocument(u, 50*time.Millisecond)
			u.mode.Store(tt.mode)
			if got, err := empty.doc.Get(t.Context()); !tt.wantErr(err) {
				t.Errorf("Get with no copy: got %q, %v; want the fetch error", got, err)
			}
		})
	}
}

func TestDocumentStaleWhenCallerGivesUp(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, serveBlock)
	s := newTestDocument(u, time.Minute) // the fetch outlives the caller
	s.doc.Seed([]byte(docV1))
	s.clock.Advance(testTTL)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	got, err := s.doc.Get(ctx)
	if err != nil || string(got) != docV1 {
		t.Errorf("got %s, %v; want the stale copy", got, err)
	}

	s = newTestDocument(u, time.Minute)
	if got, err := s.doc.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("with no copy: got %s, %v; want context.Canceled", got, err)
	}
}

func TestDocumentInvalidNotCached(t *testing.T) {
	t.Parallel()
	for _, mode := range []int32{serveHTML, serveArray} {
		u := newUpstream(t, mode)
		s := newTestDocument(u, time.Second)
		if _, err := s.doc.Get(t.Context()); !errors.Is(err, ErrNotJSON) {
			t.Fatalf("got %v, want ErrNotJSON", err)
		}
		u.mode.Store(serveV1)
		get(t, s.doc, docV1) // no clock change: nothing invalid was cached
		wantHits(t, u, 2)
	}

	u := newUpstream(t, serveV1)
	s := newTestDocument(u, time.Second)
	for _, seed := range []string{"", "[]", "<html>", `{"a":`, `{"a":1}{"b":2}`} {
		s.doc.Seed([]byte(seed))
	}
	get(t, s.doc, docV1) // fetched, none of the seeds was stored
	wantHits(t, u, 1)
}

func TestDocumentConcurrentGetSharesFetch(t *testing.T) {
	t.Parallel()
	const callers = 16
	release := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release
		w.Write([]byte(docV1))
	}))
	t.Cleanup(srv.Close)
	clock := newFakeClock()
	d := NewDocument(DocumentOptions{URL: srv.URL, Client: srv.Client(), Now: clock.Now})

	var joined sync.WaitGroup
	joined.Add(callers)
	d.waitHook = joined.Done

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			got, err := d.Get(t.Context())
			if err == nil && string(got) != docV1 {
				err = errors.New("wrong body " + string(got))
			}
			errs <- err
		})
	}
	joined.Wait() // every caller is waiting for a fetch, and the upstream has not answered any
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("upstream requests: got %d, want 1", got)
	}
}

func TestDocumentGetFreshDoesNotAllocate(t *testing.T) {
	u := newUpstream(t, serveV1)
	s := newTestDocument(u, time.Second)
	get(t, s.doc, docV1)
	ctx := t.Context()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := s.doc.Get(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per Get: got %v, want 0", allocs)
	}
}

func TestDocumentServeHTTP(t *testing.T) {
	t.Parallel()
	t.Run("methods", func(t *testing.T) {
		t.Parallel()
		u := newUpstream(t, serveV1)
		s := newTestDocument(u, time.Second)
		srv := httptest.NewServer(s.doc)
		t.Cleanup(srv.Close)
		testMethods(t, srv, []byte(docV1), "public, max-age=60")
		wantHits(t, u, 1)
	})
	t.Run("no copy", func(t *testing.T) {
		t.Parallel()
		u := newUpstream(t, serve500)
		s := newTestDocument(u, time.Second)
		srv := httptest.NewServer(s.doc)
		t.Cleanup(srv.Close)
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, body := do(t, srv, method, nil)
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s status: got %d, want 502", method, resp.StatusCode)
			}
			for k, want := range map[string]string{
				"Content-Type":                "application/json",
				"Cache-Control":               "no-store",
				"Retry-After":                 "10",
				"Access-Control-Allow-Origin": "*",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s %s: got %q, want %q", method, k, got, want)
				}
			}
			if method == http.MethodHead {
				continue
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Error != "temporarily_unavailable" || e.ErrorDescription == "" {
				t.Errorf("body: got %q (%v), want error temporarily_unavailable with a description", body, err)
			}
			if string(body) != bodyUpstream {
				t.Errorf("body: got %q, want the fixed %q", body, bodyUpstream)
			}
		}
		if logs := s.logs.String(); !strings.Contains(logs, "status 500") || strings.Contains(logs, bodyMarker) {
			t.Errorf("log %q: want the status and not the body", logs)
		}
	})
}

func TestNewDocumentDefaults(t *testing.T) {
	t.Parallel()
	d := NewDocument(DocumentOptions{URL: "https://as.example/.well-known/oauth-authorization-server"})
	if d.ttl != 5*time.Minute || d.timeout != 5*time.Second || d.retry != 30*time.Second {
		t.Errorf("got TTL %v, Timeout %v, RetryInterval %v; want 5m, 5s, 30s", d.ttl, d.timeout, d.retry)
	}
	if d.client == nil || d.client.Timeout != 10*time.Second {
		t.Errorf("client: got %+v, want one with a 10s timeout", d.client)
	}
	if got := d.headers.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control: got %q, want public, max-age=300", got)
	}
	if d.retryAfter != "30" {
		t.Errorf("Retry-After: got %q, want 30", d.retryAfter)
	}
	long := NewDocument(DocumentOptions{TTL: time.Hour, RetryInterval: 1500 * time.Millisecond})
	if got := long.headers.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control with a 1h TTL: got %q, want max-age capped at 300", got)
	}
	if long.retryAfter != "2" {
		t.Errorf("Retry-After for 1.5s: got %q, want 2", long.retryAfter)
	}
}
