package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// setup is one way of reaching the tool service.
type setup struct {
	name    string
	url     string            // MCP endpoint
	headers map[string]string // sent with every request
	proc    *proc             // the process under test: the proxy, or the tool service for the direct set-up
	session string
}

// scenario is one kind of request.
type scenario struct {
	name      string
	body      string // JSON-RPC request with %d for a unique id
	noAuth    bool   // send neither token nor identity: only meaningful through the gateway
	want2xx   bool
	gatewayOK bool // run only against the gateway
	// threads and connections override -threads and -connections when non-zero. One of each sends the requests one
	// after another on an unsaturated machine, so that p50 is the latency of one request rather than a queue.
	threads, connections int
}

// wrkLoad returns the wrk threads and connections sc runs with.
func (sc scenario) wrkLoad(o options) (threads, connections int) {
	return cmp.Or(sc.threads, o.threads), cmp.Or(sc.connections, o.connections)
}

// result is one wrk run.
type result struct {
	rps, p50, p99 float64 // requests/s, seconds
	requests      int64
	cpuProxy      time.Duration
	cpuAll        time.Duration
	peakRSS       int64 // KiB
}

func bench(ctx context.Context, o options, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "mcp-gateway-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(stderr, "building binaries…")
	gatewayBin, toolsBin, err := buildBinaries(ctx, dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	is, err := startIssuer(ctx)
	if err != nil {
		return err
	}
	if o.streamsOnly {
		return streamsBench(ctx, o, is, gatewayBin, stdout, stderr)
	}

	type row struct {
		scenario, setup string
		connections     int
		runs            []result
	}
	var rows []row
	var gatewayRequests int64
	var variantRatios []string
	var gatewayRSS int64
	for _, mode := range []string{"json", "sse", "stateless"} {
		toolsAddr, _ := freeAddr()
		bareAddr, _ := freeAddr()
		gwAddr, _ := freeAddr()
		tools, err := start(ctx, "tools", []string{"TOOLS_LISTEN_ADDR=" + toolsAddr, "TOOLS_LOG_LEVEL=warn",
			"TOOLS_JSON_RESPONSE=" + strconv.FormatBool(mode != "sse"), "TOOLS_STATELESS=" + strconv.FormatBool(mode == "stateless")}, toolsBin)
		if err != nil {
			return err
		}
		defer tools.stop()
		tok, err := is.token("http://" + gwAddr + "/mcp")
		if err != nil {
			return err
		}
		// The identity headers the gateway sends the tool service for this token: the bare proxy adds the same, and
		// the direct set-up sends them itself, so that the tool service receives the same headers in every set-up.
		ident, err := identityHeaders(tok)
		if err != nil {
			return err
		}
		identJSON, _ := json.Marshal(ident)
		bare, err := start(ctx, "bare", nil, self, "-bare-proxy", bareAddr+"=http://"+toolsAddr+"/mcp", "-bare-headers", string(identJSON))
		if err != nil {
			return err
		}
		defer bare.stop()
		gw, err := start(ctx, "gateway", []string{"GATEWAY_LISTEN_ADDR=" + gwAddr, "GATEWAY_PUBLIC_URL=http://" + gwAddr,
			"GATEWAY_ISSUER_URL=" + is.url, "GATEWAY_UPSTREAM_URL=http://" + toolsAddr + "/mcp", "GATEWAY_METRICS_ADDR=off",
			"GATEWAY_RATE_LIMIT_ANONYMOUS=off"}, gatewayBin) // the 401 scenario measures refusals, not the anonymous limit
		if err != nil {
			return err
		}
		defer gw.stop()
		if err := waitHTTP(ctx, "http://"+gwAddr+"/readyz", 200); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		auth := map[string]string{"Authorization": "Bearer " + tok}
		setups := []*setup{
			{name: "a direct", url: "http://" + toolsAddr + "/mcp", headers: ident, proc: tools},
			{name: "b bare proxy", url: "http://" + bareAddr + "/mcp", headers: auth, proc: bare},
			{name: "c gateway", url: "http://" + gwAddr + "/mcp", headers: auth, proc: gw},
		}
		if mode == "json" {
			// (d), (e), …: the same gateway with more switched on, measured beside (c).
			for _, v := range o.selectedVariants() {
				vs, err := startVariant(ctx, v, dir, gatewayBin, is.url, toolsAddr, tok)
				if err != nil {
					return err
				}
				defer vs.proc.stop()
				setups = append(setups, vs)
			}
		}
		for _, s := range setups {
			if s.session, err = initialize(ctx, s, mode == "stateless"); err != nil {
				return fmt.Errorf("%s: initialize: %w", s.name, err)
			}
		}
		var scenarios []scenario
		if mode == "json" {
			scenarios = []scenario{
				{name: "tools/call get-user-info (JSON)", body: `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"get-user-info","arguments":{}}}`, want2xx: true},
				{name: "tools/call get-user-info (JSON), 1 connection", body: `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"get-user-info","arguments":{}}}`, want2xx: true, threads: 1, connections: 1},
				{name: "tools/list (JSON)", body: `{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, want2xx: true},
				{name: "401 no token", body: `{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, noAuth: true, gatewayOK: true},
			}
		} else if mode == "stateless" {
			scenarios = []scenario{
				{name: "tools/call get-user-info (JSON, stateless tool service)", body: `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"get-user-info","arguments":{}}}`, want2xx: true},
			}
		} else {
			scenarios = []scenario{
				{name: "tools/call get-user-info (SSE)", body: `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"get-user-info","arguments":{}}}`, want2xx: true},
			}
		}
		for _, sc := range scenarios {
			results := map[string][]result{}
			for r := 0; r < o.runs; r++ {
				for _, s := range setups { // interleaved, so that drift hits every set-up alike
					if sc.gatewayOK && s.proc != gw {
						continue
					}
					fmt.Fprintf(stderr, "%s / %s / run %d…\n", sc.name, s.name, r+1)
					res, err := runWrk(ctx, o, dir, s, sc, tools)
					if err != nil {
						return fmt.Errorf("%s / %s: %w", sc.name, s.name, err)
					}
					results[s.name] = append(results[s.name], res)
					if s.proc == gw {
						gatewayRequests += res.requests
					}
				}
			}
			_, conns := sc.wrkLoad(o)
			for _, s := range setups {
				if len(results[s.name]) > 0 {
					rows = append(rows, row{sc.name, s.name, conns, results[s.name]})
				}
			}
			rps := func(name string) float64 { return median(results[name], func(x result) float64 { return x.rps }) }
			for _, v := range o.selectedVariants() {
				if len(results[v.name]) > 0 {
					variantRatios = append(variantRatios, fmt.Sprintf("- %s: %s / gateway throughput %.2f", sc.name, v.name, rps(v.name)/rps("c gateway")))
				}
			}
		}
		if mode == "json" {
			gatewayRSS = gw.mem("VmRSS")
		}
	}

	// The table: medians.
	fmt.Fprintf(stdout, "Runs: %d × %s per set-up and scenario, wrk -t%d -c%d (-t1 -c1 where the scenario says 1 connection) on one MCP session, unique request ids. Medians.\n\n",
		o.runs, o.duration, o.threads, o.connections)
	tw := tabwriter.NewWriter(stdout, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| scenario\t set-up\t req/s\t p50\t p99\t p50 added vs (b)\t CPU s/1k req (proxy)\t CPU s/1k req (proxy+tools)\t peak RSS (process)\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	bareP50 := map[string]float64{}
	bareRPS := map[string]float64{}
	for _, r := range rows {
		if r.setup == "b bare proxy" {
			bareP50[r.scenario] = median(r.runs, func(x result) float64 { return x.p50 })
			bareRPS[r.scenario] = median(r.runs, func(x result) float64 { return x.rps })
		}
	}
	for _, r := range rows {
		rps := median(r.runs, func(x result) float64 { return x.rps })
		p50 := median(r.runs, func(x result) float64 { return x.p50 })
		p99 := median(r.runs, func(x result) float64 { return x.p99 })
		added := "—"
		if b, ok := bareP50[r.scenario]; ok && r.setup != "b bare proxy" && r.setup != "a direct" {
			added = fmt.Sprintf("%+.0f µs", (p50-b)*1e6)
		}
		cpuProxy := "—"
		if r.setup != "a direct" {
			cpuProxy = fmt.Sprintf("%.3f", median(r.runs, func(x result) float64 { return x.cpuProxy.Seconds() / float64(x.requests) * 1000 }))
		}
		cpuAll := fmt.Sprintf("%.3f", median(r.runs, func(x result) float64 { return x.cpuAll.Seconds() / float64(x.requests) * 1000 }))
		rss := slices.Max(collect(r.runs, func(x result) float64 { return float64(x.peakRSS) }))
		fmt.Fprintf(tw, "| %s\t %s\t %.0f\t %s\t %s\t %s\t %s\t %s\t %.1f MiB\t\n", r.scenario, r.setup, rps, ms(p50), ms(p99), added, cpuProxy, cpuAll, rss/1024)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	for _, r := range rows {
		if r.setup == "c gateway" && bareRPS[r.scenario] > 0 {
			rps := median(r.runs, func(x result) float64 { return x.rps })
			fmt.Fprintf(stdout, "- %s: gateway/bare proxy throughput %.2f\n", r.scenario, rps/bareRPS[r.scenario])
		}
	}
	for _, r := range rows {
		if r.setup == "c gateway" && r.connections == 1 && bareP50[r.scenario] > 0 {
			p50 := median(r.runs, func(x result) float64 { return x.p50 })
			fmt.Fprintf(stdout, "- %s: the gateway adds %+.0f µs per request (median p50 minus the bare proxy's, requests one at a time)\n",
				r.scenario, (p50-bareP50[r.scenario])*1e6)
		}
	}
	for _, l := range variantRatios {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintf(stdout, "- gateway resident memory after %d requests: %.1f MiB\n\n", gatewayRequests, float64(gatewayRSS)/1024)

	return streamsBench(ctx, o, is, gatewayBin, stdout, stderr)
}

// variant is a set-up like (c), the gateway, with more switched on; each is measured beside (c) in the JSON mode, and
// its throughput printed as a ratio to (c)'s.
type variant struct {
	name string // "d gateway + policy": the letter orders the table
	// env prepares what the variant needs (files in dir, a process) and returns the gateway's environment on top of
	// (c)'s, and what undoes the preparation once the gateway has stopped.
	env func(ctx context.Context, dir string) (env []string, cleanup func(), err error)
}

// variants are the set-ups beyond (c), in the order they are measured. Files beside this one add theirs in init.
var variants = []variant{{name: "d gateway + policy", env: policyEnv}}

// selectedVariants returns the variants -variants names, every one by default.
func (o options) selectedVariants() []variant {
	if len(o.variants) == 0 {
		return variants
	}
	var vs []variant
	for _, v := range variants {
		if slices.ContainsFunc(o.variants, func(want string) bool { return strings.HasPrefix(v.name, want+" ") || v.name == want }) {
			vs = append(vs, v)
		}
	}
	return vs
}

// benchPolicy grants the bench's user (role member, no permissions) every tool of the tool service, one rule with a
// requirement among them, the others denied by default: the shape of the development example's policy.
const benchPolicy = `default: deny
rules:
  - name: everyone-reads-themselves
    tools: ["get-user-info", "get-user-permissions"]
  - name: members-look-up-the-directory
    tools: ["get-workos-user"]
    require:
      roles: ["member"]
  - name: admins
    tools: ["*"]
    require:
      roles: ["admin"]
`

// policyEnv is set-up (d)'s environment: benchPolicy, and the audit log on (to stderr, which the bench discards).
func policyEnv(_ context.Context, dir string) ([]string, func(), error) {
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(benchPolicy), 0o600); err != nil {
		return nil, nil, err
	}
	return []string{"GATEWAY_POLICY_FILE=" + file, "GATEWAY_AUDIT_LOG=stderr"}, func() {}, nil
}

// startVariant starts v: a gateway like (c), with v's environment on top.
func startVariant(ctx context.Context, v variant, dir, gatewayBin, issuerURL, toolsAddr, tok string) (*setup, error) {
	env, cleanup, err := v.env(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v.name, err)
	}
	addr, err := freeAddr()
	if err != nil {
		cleanup()
		return nil, err
	}
	gw, err := start(ctx, v.name, append([]string{"GATEWAY_LISTEN_ADDR=" + addr, "GATEWAY_PUBLIC_URL=http://" + addr,
		"GATEWAY_AUDIENCES=" + tokenAudience(tok), "GATEWAY_ISSUER_URL=" + issuerURL, "GATEWAY_UPSTREAM_URL=http://" + toolsAddr + "/mcp",
		"GATEWAY_METRICS_ADDR=off", "GATEWAY_RATE_LIMIT_ANONYMOUS=off"}, env...), gatewayBin)
	if err != nil {
		cleanup()
		return nil, err
	}
	gw.cleanup = cleanup
	if err := waitHTTP(ctx, "http://"+addr+"/readyz", 200); err != nil {
		gw.stop()
		return nil, fmt.Errorf("%s: %w", v.name, err)
	}
	return &setup{name: v.name, url: "http://" + addr + "/mcp", headers: map[string]string{"Authorization": "Bearer " + tok}, proc: gw}, nil
}

// tokenAudience returns the aud of the bench token, which names gateway (c)'s URL: gateway (d) accepts it too.
func tokenAudience(tok string) string {
	parts := strings.Split(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Aud string }
	json.Unmarshal(raw, &c)
	return c.Aud
}

// identityHeaders returns the identity headers the gateway sets for the bench token tok (see principal in proxy/token), which
// carries every claim the gateway maps; the claims header is the token's payload as signed.
func identityHeaders(tok string) (map[string]string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("bench token is not a JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c struct {
		Sub, Email, Name, Scope string
		OrgID                   string `json:"org_id"`
		SID                     string `json:"sid"`
		ClientID                string `json:"client_id"`
		Roles                   []string
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	id := identity.Identity{UserID: c.Sub, Email: c.Email, Name: c.Name, OrgID: c.OrgID, SessionID: c.SID,
		ClientID: c.ClientID, Roles: c.Roles, Scopes: strings.Fields(c.Scope), Claims: raw}
	h := http.Header{}
	id.Set(h)
	out := map[string]string{}
	for k := range h {
		out[k] = h.Get(k)
	}
	return out, nil
}

func ms(s float64) string { return fmt.Sprintf("%.2f ms", s*1e3) }

func collect(rs []result, f func(result) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func median(rs []result, f func(result) float64) float64 {
	v := collect(rs, f)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// initialize opens an MCP session through s and returns its id.
func initialize(ctx context.Context, s *setup, stateless bool) (string, error) {
	post := func(body, sid string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", s.url, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		for k, v := range s.headers {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		return http.DefaultClient.Do(req)
	}
	resp, err := post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, "")
	if err != nil {
		return "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || (sid == "") != stateless {
		return "", fmt.Errorf("status %d, session %q: %s", resp.StatusCode, sid, b)
	}
	resp, err = post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, sid)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return "", fmt.Errorf("notifications/initialized: status %d", resp.StatusCode)
	}
	return sid, nil
}

// luaScript makes wrk send sc's request with a unique id per request across threads.
func luaScript(s *setup, sc scenario) string {
	var b strings.Builder
	b.WriteString("local threads = 0\nfunction setup(thread) thread:set(\"tid\", threads); threads = threads + 1 end\n")
	b.WriteString("local counter = 0\nfunction init(args) counter = (tid or 0) * 1000000000 + 1 end\n")
	b.WriteString("wrk.method = \"POST\"\n")
	b.WriteString("wrk.headers[\"Content-Type\"] = \"application/json\"\n")
	b.WriteString("wrk.headers[\"Accept\"] = \"application/json, text/event-stream\"\n")
	b.WriteString("wrk.headers[\"MCP-Protocol-Version\"] = \"2025-06-18\"\n")
	if !sc.noAuth {
		for k, v := range s.headers {
			fmt.Fprintf(&b, "wrk.headers[%q] = %q\n", k, v)
		}
		if s.session != "" {
			fmt.Fprintf(&b, "wrk.headers[\"Mcp-Session-Id\"] = %q\n", s.session)
		}
	}
	fmt.Fprintf(&b, "local body = %q\n", sc.body)
	b.WriteString("request = function()\n  counter = counter + 1\n  return wrk.format(nil, nil, nil, string.format(body, counter))\nend\n")
	return b.String()
}

var (
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reRequests = regexp.MustCompile(`(\d+) requests in`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reErrors   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	rePct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

func runWrk(ctx context.Context, o options, dir string, s *setup, sc scenario, tools *proc) (result, error) {
	script := filepath.Join(dir, "script.lua")
	if err := os.WriteFile(script, []byte(luaScript(s, sc)), 0o600); err != nil {
		return result{}, err
	}
	threads, connections := sc.wrkLoad(o)
	cpu0, tools0 := s.proc.cpu(), tools.cpu()
	out, err := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(connections),
		"-d", o.duration.String(), "--timeout", "10s", "--latency", "-s", script, s.url).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var res result
	res.cpuProxy = s.proc.cpu() - cpu0
	res.cpuAll = res.cpuProxy
	if s.proc != tools {
		res.cpuAll += tools.cpu() - tools0
	}
	res.peakRSS = s.proc.mem("VmHWM")
	text := string(out)
	m := reRPS.FindStringSubmatch(text)
	n := reRequests.FindStringSubmatch(text)
	if m == nil || n == nil {
		return result{}, fmt.Errorf("cannot read wrk's output:\n%s", text)
	}
	res.rps, _ = strconv.ParseFloat(m[1], 64)
	res.requests, _ = strconv.ParseInt(n[1], 10, 64)
	var non2xx int64
	if m := reNon2xx.FindStringSubmatch(text); m != nil {
		non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if sc.want2xx && non2xx > 0 {
		return result{}, fmt.Errorf("%d of %d responses were not 2xx", non2xx, res.requests)
	}
	if !sc.want2xx && non2xx != res.requests {
		return result{}, fmt.Errorf("%d of %d responses were 2xx, want none", res.requests-non2xx, res.requests)
	}
	if m := reErrors.FindStringSubmatch(text); m != nil && (m[1] != "0" || m[2] != "0" || m[3] != "0" || m[4] != "0") {
		return result{}, fmt.Errorf("socket errors: %s", m[0])
	}
	sc2 := bufio.NewScanner(strings.NewReader(text))
	for sc2.Scan() {
		if m := rePct.FindStringSubmatch(sc2.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			v *= map[string]float64{"us": 1e-6, "ms": 1e-3, "s": 1}[m[3]]
			if m[1] == "50" {
				res.p50 = v
			} else {
				res.p99 = v
			}
		}
	}
	if res.requests == 0 {
		return result{}, fmt.Errorf("no requests completed:\n%s", text)
	}
	return res, nil
}
