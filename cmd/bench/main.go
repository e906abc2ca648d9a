// Command bench measures the gateway's cost side by side with a direct connection to the tool service and a bare
// reverse proxy, and the gateway with a policy beside the gateway without, in one run on one machine, with wrk as the
// load generator (apt-get install wrk). It prints a
// Markdown table of medians over several runs, then the memory per open event stream.
//
//	go run ./cmd/bench                 # full run (a few minutes)
//	go run ./cmd/bench -short          # a quick run that proves the set-up works
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	duration    time.Duration
	connections int
	threads     int
	runs        int
	streams     []int
	short       bool
	streamsOnly bool
	// streamKinds are the stream requests measured (GET, POST: a POST of subscriptions/listen); streamPaths the
	// values of GATEWAY_STREAM_RELAY (auto: the relay, off: the reverse proxy).
	streamKinds []string
	streamPaths []string
	// variants are the letters (or names) of the set-ups beyond (c) to measure; empty: all.
	variants []string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var streams string
	bare := fs.String("bare-proxy", "", "internal: serve a bare reverse proxy on `listen=upstream`")
	bareHeaders := fs.String("bare-headers", "{}", "internal: the identity headers the bare proxy adds, as a JSON `object`")
	broadcast := fs.String("broadcaster", "", "internal: serve the event-stream upstream of the streams measurement on `listen`")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run")
	fs.IntVar(&o.connections, "connections", 20, "wrk connections (all on one MCP session); the 1-connection scenario always uses one")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads; the 1-connection scenario always uses one")
	fs.IntVar(&o.runs, "runs", 3, "runs per scenario and set-up; medians are reported")
	fs.StringVar(&streams, "streams", "1000,5000,9000", "numbers of idle event streams to hold open through the gateway (each needs two open files in the gateway: ulimit -n bounds it)")
	fs.BoolVar(&o.streamsOnly, "streams-only", false, "measure only the open streams")
	kinds := fs.String("stream-kinds", "GET,POST", "stream requests to measure: GET (the standalone stream), POST (subscriptions/listen, MCP 2026-07-28)")
	paths := fs.String("stream-relay", "auto,off", "values of GATEWAY_STREAM_RELAY to measure streams with (auto: the relay; off: the reverse proxy)")
	variantList := fs.String("variants", "", "set-ups beyond (c) to measure, by letter (`d,e`); empty: all")
	fs.BoolVar(&o.short, "short", false, "one 2s run per scenario and 200 streams: proves the set-up works, figures are not meaningful")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bare != "" {
		listen, upstream, ok := strings.Cut(*bare, "=")
		if !ok {
			return errors.New("-bare-proxy wants listen=upstream")
		}
		var ident map[string]string
		if err := json.Unmarshal([]byte(*bareHeaders), &ident); err != nil {
			return fmt.Errorf("-bare-headers: %w", err)
		}
		return serveBareProxy(ctx, listen, upstream, ident)
	}
	if *broadcast != "" {
		return serveBroadcaster(ctx, *broadcast)
	}
	if o.short {
		o.duration, o.runs, streams = 2*time.Second, 1, "200"
	}
	o.streamKinds, o.streamPaths = strings.Split(*kinds, ","), strings.Split(*paths, ",")
	if *variantList != "" {
		o.variants = strings.Split(*variantList, ",")
	}
	for _, k := range o.streamKinds {
		if k != "GET" && k != "POST" {
			return fmt.Errorf("-stream-kinds: %q is neither GET nor POST", k)
		}
	}
	for _, s := range strings.Split(streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-streams: %q is not a positive number", s)
		}
		o.streams = append(o.streams, n)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: apt-get install wrk")
	}
	raiseFileLimit()
	return bench(ctx, o, stdout, stderr)
}

// bareProxyMaxBody is the gateway's default GATEWAY_MAX_BODY_BYTES.
const bareProxyMaxBody = 4 << 20

// serveBareProxy is set-up (b): httputil.ReverseProxy with no authentication, with the same transport tuning and
// request-body limit as the gateway's. It sends the upstream the headers the gateway sends, with fixed values: the
// credentials removed, the identity headers ident, X-Forwarded-For, -Host and -Proto and a request id. The tool
// service then does the same work behind (b) as behind (c), and the difference is the gateway's own.
func serveBareProxy(ctx context.Context, listen, upstream string, ident map[string]string) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
			pr.Out.URL.Path = target.Path
			pr.SetXForwarded()
			h := pr.Out.Header
			delete(h, "Authorization")
			h["X-Request-Id"] = []string{"0123456789ab-1000000"}
			for k, v := range ident {
				h[k] = []string{v}
			}
		},
		Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		},
		BufferPool: newPool(),
	}
	// The body limit is not only for likeness. The transport sends the body and then reads once more to check that it
	// has ended; by then the tool service may have answered, and writing the answer's header makes the server drain
	// and close the request body, so that read fails and the transport drops the upstream connection in the middle of
	// the answer (wrk counts a read error). http.MaxBytesReader remembers the end of the body, as it does in the gateway.
	limited := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, bareProxyMaxBody)
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: listen, Handler: limited, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type pool chan []byte

func newPool() pool { return make(pool, 256) }
func (p pool) Get() []byte {
	select {
	case b := <-p:
		return b
	default:
		return make([]byte, 8<<10)
	}
}
func (p pool) Put(b []byte) {
	select {
	case p <- b:
	default:
	}
}

// issuer is a local authorization server: metadata and a JWKS with one RSA key, and the tokens it signs.
type issuer struct {
	url string
	key *rsa.PrivateKey
}

func startIssuer(ctx context.Context) (*issuer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + ln.Addr().String(), key: k}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": is.url, "jwks_uri": is.url + "/jwks",
			"authorization_endpoint": is.url + "/authorize", "token_endpoint": is.url + "/token",
			"code_challenge_methods_supported": []string{"S256"}, "introspection_endpoint": is.url + "/introspect"})
	})
	mux.HandleFunc("POST /introspect", is.serveIntrospection)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "bench", Algorithm: "RS256", Use: "sig"}}})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	go func() { <-ctx.Done(); srv.Close() }()
	return is, nil
}

func (is *issuer) token(aud string) (string, error) {
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": is.url, "sub": "user_bench", "aud": aud, "exp": now.Add(24 * time.Hour).Unix(),
		"iat": now.Unix(), "email": "bench@example.com", "name": "Bench", "org_id": "org_bench", "sid": "sid_bench",
		"client_id": "client_bench", "scope": "openid email", "roles": []string{"member"}})
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key}, (&jose.SignerOptions{}).WithHeader("kid", "bench"))
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(claims)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// proc is a child process whose CPU time and memory can be read from /proc.
type proc struct {
	name    string
	cmd     *exec.Cmd
	cleanup func() // run once the process has stopped; nil: nothing
}

func start(ctx context.Context, name string, env []string, path string, args ...string) (*proc, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = nil, nil // /dev/null: no pipe to drain
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd}, nil
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	if p.cleanup != nil {
		p.cleanup()
		p.cleanup = nil
	}
}

// cpu returns the process's user+system CPU time.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// mem returns a field of /proc/pid/status in KiB (VmRSS, VmHWM).
func (p *proc) mem(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP waits until url answers with want.
func waitHTTP(ctx context.Context, u string, want int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %d within 20s (last: %v)", u, want, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// buildBinaries builds the gateway and the tool service with the repository's build flags.
func buildBinaries(ctx context.Context, dir string) (gateway, tools string, err error) {
	gateway, tools = filepath.Join(dir, "gateway"), filepath.Join(dir, "tools")
	for bin, pkg := range map[string]string{gateway: "./cmd/gateway", tools: "./cmd/tools"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return gateway, tools, nil
}

func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
