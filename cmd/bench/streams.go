package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// broadcaster is an upstream that holds event streams open and ends each with one event when told to.
type broadcaster struct {
	open atomic.Int64
	fire chan struct{}
}

func (b *broadcaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

// streamsBench holds N idle event streams open through a fresh gateway and reports its memory per stream, then ends
// every stream with an event and checks that each client received it.
func streamsBench(ctx context.Context, o options, is *issuer, gatewayBin string, stdout, stderr io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b := &broadcaster{fire: make(chan struct{})}
	upstream := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go upstream.Serve(ln)
	defer upstream.Close()

	gwAddr, _ := freeAddr()
	gw, err := start(ctx, "gateway", []string{"GATEWAY_LISTEN_ADDR=" + gwAddr, "GATEWAY_PUBLIC_URL=http://" + gwAddr,
		"GATEWAY_ISSUER_URL=" + is.url, "GATEWAY_UPSTREAM_URL=http://" + ln.Addr().String() + "/mcp", "GATEWAY_METRICS_ADDR=off",
		"GATEWAY_LOG_LEVEL=warn"}, gatewayBin)
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
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Accept", "text/event-stream")
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
	if got := b.open.Load(); got != int64(total) {
		return fmt.Errorf("upstream holds %d streams, want %d", got, total)
	}
	close(b.fire)
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
