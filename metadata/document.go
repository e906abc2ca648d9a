package metadata

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Document is an upstream JSON document, such as the authorization server's metadata passed through at the
// gateway's own /.well-known/oauth-authorization-server for legacy clients that have no Protected Resource Metadata.
// It is fetched with a timeout, cached for a TTL and served stale when a refresh fails, so a slow or failing
// upstream delays at most one request per retry interval and never turns a known document into an error.
//
// A Document is safe for concurrent use. Create it with NewDocument.
type Document struct {
	url     string
	client  *http.Client
	ttl     time.Duration
	timeout time.Duration
	retry   time.Duration
	now     func() time.Time
	log     *slog.Logger

	headers    http.Header // success headers without Content-Length; shared, read-only
	retryAfter string      // Retry-After of the 502

	cur atomic.Pointer[docEntry] // nil until the first successful fetch or Seed

	mu       sync.Mutex // guards inflight
	inflight *docFetch  // the fetch under way, if any

	// waitHook, when set by a test, runs after a caller has joined a fetch and before it waits for it.
	waitHook func()
}

// docEntry is one cached copy. Entries are immutable: a change stores a new one.
type docEntry struct {
	body    []byte
	length  []string  // Content-Length, prebuilt
	fetched time.Time // when the body was fetched or seeded
	expires time.Time // fetched + TTL
	retryAt time.Time // after a failed refresh: the stale body is served without a fetch until then
}

// docFetch is a fetch shared by every caller that finds the copy stale while it runs.
type docFetch struct {
	done  chan struct{} // closed when entry or err is set
	entry *docEntry
	err   error
}

// DocumentOptions configures NewDocument. Only URL is required.
type DocumentOptions struct {
	// URL of the upstream document, from configuration (for example AuthServer.URL found by Discover).
	URL string
	// Client fetches the document. nil: a client with a 10 second timeout.
	Client *http.Client
	// TTL is how long a fetched copy is fresh, that is served without asking the upstream. 0: 5 minutes.
	// The Cache-Control max-age sent to clients is the TTL, capped at 5 minutes.
	TTL time.Duration
	// Timeout bounds one fetch, whatever the deadline of the request that caused it. 0: 5 seconds.
	Timeout time.Duration
	// RetryInterval is, after a failed refresh, how long the stale copy is served before the upstream is asked
	// again; it keeps a down upstream from costing every request a Timeout. It is also the Retry-After of a 502.
	// 0: 30 seconds.
	RetryInterval time.Duration
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// Logger receives refresh failures, with the URL. nil: discard.
	Logger *slog.Logger
}

// NewDocument returns a Document that fetches opts.URL on first use. Call Seed to start with a copy already fetched.
func NewDocument(opts DocumentOptions) *Document {
	d := &Document{
		url:     opts.URL,
		client:  opts.Client,
		ttl:     opts.TTL,
		timeout: opts.Timeout,
		retry:   opts.RetryInterval,
		now:     opts.Now,
		log:     opts.Logger,
	}
	if d.client == nil {
		d.client = &http.Client{Timeout: 10 * time.Second}
	}
	if d.ttl <= 0 {
		d.ttl = 5 * time.Minute
	}
	if d.timeout <= 0 {
		d.timeout = 5 * time.Second
	}
	if d.retry <= 0 {
		d.retry = 30 * time.Second
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	maxAge := min(d.ttl, 5*time.Minute)
	d.headers = jsonHeaders("public, max-age=" + strconv.Itoa(int(maxAge/time.Second)))
	d.retryAfter = strconv.Itoa(max(1, int((d.retry+time.Second-1)/time.Second)))
	return d
}

// Seed stores a document already fetched (for example AuthServer.Raw from Discover at start) as fresh.
// body is copied. A body that is not a JSON object of at most 1 MiB is ignored, and the failure logged.
func (d *Document) Seed(body []byte) {
	if len(body) > maxDocumentSize || !isJSONObject(body) {
		d.log.Warn("ignoring seeded document: not a JSON object of at most 1 MiB", "url", d.url)
		return
	}
	d.cur.Store(d.newEntry(bytes.Clone(body), d.now()))
}

func (d *Document) newEntry(body []byte, now time.Time) *docEntry {
	return &docEntry{
		body:    body,
		length:  []string{strconv.Itoa(len(body))},
		fetched: now,
		expires: now.Add(d.ttl),
	}
}

// Get returns the cached document. The returned slice is shared: callers must not modify it.
//
// A copy younger than the TTL is returned at once. An older one is refreshed first: one fetch at a time, shared by
// every caller that arrives while it runs, bounded by the Timeout and not cancelled by ctx. If the refresh fails,
// Get returns the stale copy, logs the failure with the URL, and serves that copy without asking the upstream again
// for the RetryInterval. If ctx ends while the refresh runs, Get returns the stale copy, or ctx's error when there is
// none. With no copy at all, Get returns the fetch error (which names no response body).
func (d *Document) Get(ctx context.Context) ([]byte, error) {
	e, err := d.get(ctx)
	if err != nil {
		return nil, err
	}
	return e.body, nil
}

func (d *Document) get(ctx context.Context) (*docEntry, error) {
	e := d.cur.Load()
	if e != nil {
		now := d.now()
		if now.Before(e.expires) || now.Before(e.retryAt) {
			return e, nil
		}
	}
	f := d.join(ctx)
	if d.waitHook != nil {
		d.waitHook()
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		if e != nil {
			return e, nil
		}
		return nil, ctx.Err()
	}
	if f.err == nil {
		return f.entry, nil
	}
	if e := d.cur.Load(); e != nil {
		return e, nil
	}
	return nil, f.err
}

// join returns the fetch under way, starting one if there is none.
func (d *Document) join(ctx context.Context) *docFetch {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight == nil {
		d.inflight = &docFetch{done: make(chan struct{})}
		// The fetch outlives the caller that started it: the others waiting for it have their own deadlines.
		go d.fetch(context.WithoutCancel(ctx), d.inflight)
	}
	return d.inflight
}

// fetch runs one refresh and publishes its outcome.
func (d *Document) fetch(ctx context.Context, f *docFetch) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	body, err := fetchJSON(ctx, d.client, d.url)
	now := d.now()

	d.mu.Lock()
	if err == nil {
		f.entry = d.newEntry(body, now)
		d.cur.Store(f.entry)
	} else {
		f.err = err
		if old := d.cur.Load(); old != nil {
			stale := *old
			stale.retryAt = now.Add(d.retry)
			d.cur.Store(&stale)
			d.log.Warn("upstream document refresh failed; serving stale copy",
				"url", d.url, "age", now.Sub(old.fetched), "retry_in", d.retry, "err", err)
		} else {
			d.log.Error("upstream document unavailable", "url", d.url, "err", err)
		}
	}
	d.inflight = nil
	d.mu.Unlock()
	close(f.done)
}

// ServeHTTP answers GET and HEAD with the document (200 application/json), OPTIONS with a 204 CORS preflight and
// other methods with 405, all with Access-Control-Allow-Origin: *. When no copy can be had it answers 502 with
// Retry-After and the fixed body {"error":"temporarily_unavailable","error_description":"..."}: nothing from the
// upstream or the error reaches the client; the failed fetch logs the cause with the URL.
func (d *Document) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		Preflight(w, r, allowedMethods)
		return
	default:
		methodNotAllowed(w)
		return
	}
	e, err := d.get(r.Context())
	if err != nil {
		w.Header().Set("Retry-After", d.retryAfter)
		writeError(w, http.StatusBadGateway, bodyUpstream)
		return
	}
	h := w.Header()
	setHeaders(h, d.headers)
	h["Content-Length"] = e.length
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(e.body)
	}
}
