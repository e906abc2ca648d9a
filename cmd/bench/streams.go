package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// broadcaster is an upstream that holds event streams open and ends each with one event when told to (POST /fire):
// GET streams, and POST streams of subscriptions/listen (MCP 2026-07-28). GET /open reports how many streams it holds. It runs in its own process so that each process needs at most one
// file descriptor per stream (the gateway needs two).
type broadcaster struct {
	open atomic.Int64
	fire chan struct{}
	once sync.Once
}

func serveBroadcaster(ctx context.Context, listen string) error {
	b := &broadcaster{fire: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /mcp", b)
	mux.Handle("POST /mcp", b)
	mux.HandleFunc("POST /fire", func(w http.ResponseWriter, r *http.Request) { b.once.Do(func() { close(b.fire) }) })
	mux.HandleFunc("GET /open", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, b.open.Load()) })
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (b *broadcaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Mcp-Method") != "subscriptions/listen" {
			http.Error(w, "only subscriptions/listen", http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, ": open\n\n")
	w.(http.Flusher).Flush()
	b.open.Add(1)
	defer b.open.Add(-1)
	select {
	case <-b.fire:
		io.WriteString(w, "event: message\ndata: {\"ping\":true}\n\n")
		w.(http.Flusher).Flush()
	case <-r.Context().Done():
	}
}

// listenBody is the body of a POST stream: a subscriptions/listen request.
const listenBody = `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"notifications":{"toolsListChanged":true}}}`

// streamsBench measures, for each kind of stream request and each path (GATEWAY_STREAM_RELAY), the gateway's memory
// per idle stream.
func streamsBench(ctx context.Context, o options, is *issuer, gatewayBin string, stdout, stderr io.Writer) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		if need := 2*uint64(slices.Max(o.streams)) + 256; need > lim.Cur {
			return fmt.Errorf("-streams: %d streams need about %d open files in the gateway, and this machine allows %d (ulimit -n)", slices.Max(o.streams), need, lim.Cur)
		}
	}
	for _, kind := range o.streamKinds {
		for _, path := range o.streamPaths {
			fmt.Fprintf(stdout, "\n%s streams, GATEWAY_STREAM_RELAY=%s.\n", kind, path)
			if err := streamsRun(ctx, o, is, gatewayBin, kind, path, stdout, stderr); err != nil {
				return fmt.Errorf("%s streams, GATEWAY_STREAM_RELAY=%s: %w", kind, path, err)
			}
		}
	}
	return nil
}

// streamsRun holds N idle event streams of one kind (GET or POST) open through a fresh gateway whose
// GATEWAY_STREAM_RELAY is path and reports its memory per stream, then ends every stream with an event and checks
// that each client received it.
func streamsRun(ctx context.Context, o options, is *issuer, gatewayBin, kind, path string, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	upAddr, _ := freeAddr()
	up, err := start(ctx, "broadcaster", nil, self, "-broadcaster", upAddr)
	if err != nil {
		return err
	}
	defer up.stop()
	if err := waitHTTP(ctx, "http://"+upAddr+"/open", 200); err != nil {
		return err
	}

	gwAddr, _ := freeAddr()
	gw, err := start(ctx, "gateway", []string{"GATEWAY_LISTEN_ADDR=" + gwAddr, "GATEWAY_PUBLIC_URL=http://" + gwAddr,
		"GATEWAY_ISSUER_URL=" + is.url, "GATEWAY_UPSTREAM_URL=http://" + upAddr + "/mcp", "GATEWAY_METRICS_ADDR=off",
		"GATEWAY_LOG_LEVEL=warn", "GATEWAY_STREAM_RELAY=" + path,
		"GATEWAY_MAX_STREAMS_USER=0"}, gatewayBin) // one user holds every stream: no per-user cap
	if err != nil {
		return err
	}
	defer gw.stop()
	if err := waitHTTP(ctx, "http://"+gwAddr+"/readyz", 200); err != nil {
		return err
	}
	tok, err := is.token("http://" + gwAddr + "/mcp")
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}}
	var (
		mu      sync.Mutex
		readers []*bufio.Reader
		bodies  []io.Closer
		relayed atomic.Int64 // streams answered with Connection: close, which only the relay says
	)
	defer func() {
		for _, c := range bodies {
			c.Close()
		}
	}()
	open := func(n int) error {
		sem := make(chan struct{}, 64)
		errc := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+gwAddr+"/mcp", nil)
				if kind == "POST" {
					req, _ = http.NewRequestWithContext(ctx, "POST", "http://"+gwAddr+"/mcp", strings.NewReader(listenBody))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Mcp-Method", "subscriptions/listen")
					req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Accept", "application/json, text/event-stream")
				resp, err := client.Do(req)
				if err != nil {
					errc <- err
					return
				}
				br := bufio.NewReader(resp.Body)
				if line, err := br.ReadString('\n'); err != nil || line != ": open\n" {
					resp.Body.Close()
					errc <- fmt.Errorf("stream did not open: %q %v", line, err)
					return
				}
				if resp.Close {
					relayed.Add(1)
				}
				mu.Lock()
				readers, bodies = append(readers, br), append(bodies, resp.Body)
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errc)
		return <-errc
	}

	settle := func() int64 {
		time.Sleep(time.Second) // let the gateway's heap settle before reading RSS; this is a measurement, not synchronisation
		return gw.mem("VmRSS")
	}
	base := settle()
	fmt.Fprintf(stdout, "Open idle event streams through the gateway (gateway RSS; baseline %.1f MiB):\n\n", float64(base)/1024)
	fmt.Fprintln(stdout, "| streams | gateway RSS | KiB per stream (vs baseline) |")
	fmt.Fprintln(stdout, "|---|---|---|")
	total := 0
	for _, n := range o.streams {
		fmt.Fprintf(stderr, "opening streams up to %d…\n", n)
		if err := open(n - total); err != nil {
			return fmt.Errorf("opening streams: %w", err)
		}
		total = n
		rss := settle()
		fmt.Fprintf(stdout, "| %d | %.1f MiB | %.1f |\n", n, float64(rss)/1024, float64(rss-base)/float64(n))
	}
	fmt.Fprintf(stdout, "\nTaken over by the relay: %d of %d streams.\n", relayed.Load(), total)
	if got := httpText(ctx, "GET", "http://"+upAddr+"/open"); got != strconv.Itoa(total) {
		return fmt.Errorf("upstream holds %s streams, want %d", got, total)
	}
	httpText(ctx, "POST", "http://"+upAddr+"/fire")
	deadline := time.Now().Add(30 * time.Second)
	var received atomic.Int64
	var wg sync.WaitGroup
	for _, br := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				line, err := br.ReadString('\n')
				if strings.HasPrefix(line, "data: {\"ping\":true}") {
					received.Add(1)
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(stdout, "\nEvent at the end: received on %d of %d streams.\n", received.Load(), total)
	if received.Load() != int64(total) {
		return errors.New("some streams did not receive the final event")
	}
	return nil
}

// httpText returns the body of a request, or the error's text.
func httpText(ctx context.Context, method, u string) string {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
