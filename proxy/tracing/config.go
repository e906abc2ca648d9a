// Package tracing sets up OpenTelemetry traces for the gateway and the tool service from the SDK's standard
// variables (OTEL_*), read from the environment map the binaries are given, and carries the W3C trace context
// (traceparent, tracestate) in and out of HTTP headers with the bounds a service facing strangers needs. It imports
// nothing of the gateway.
//
// Traces are off unless an exporter is asked for (see FromEnv); off, New returns no provider, and the binaries then
// install nothing on the request path.
package tracing

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Protocols of the OTLP exporter.
const (
	ProtocolProtobuf = "http/protobuf"
	ProtocolJSON     = "http/json"
)

// Config is the traces' configuration, read from OTEL_* variables by FromEnv.
type Config struct {
	// Enabled is whether spans are recorded and exported at all.
	Enabled bool
	// Endpoint is the URL spans are sent to: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
	// OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces appended, else http://localhost:4318/v1/traces.
	Endpoint string
	// Protocol is OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL: http/protobuf (the default) or http/json.
	Protocol string
	// Headers are sent with every export (OTEL_EXPORTER_OTLP[_TRACES]_HEADERS): credentials of the collector, say.
	Headers map[string]string
	// Timeout bounds one export (OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT, in milliseconds); default 10s.
	Timeout time.Duration
	// Gzip compresses exports (OTEL_EXPORTER_OTLP[_TRACES]_COMPRESSION=gzip).
	Gzip bool
	// Sampler is OTEL_TRACES_SAMPLER, default parentbased_always_on; SamplerArg is OTEL_TRACES_SAMPLER_ARG's ratio
	// for the traceidratio samplers (default 1).
	Sampler    string
	SamplerArg float64
	// ServiceName is OTEL_SERVICE_NAME, else service.name of OTEL_RESOURCE_ATTRIBUTES; "" lets New use its default.
	ServiceName string
	// Attributes are OTEL_RESOURCE_ATTRIBUTES, in order.
	Attributes [][2]string
}

// The variables FromEnv reads.
const (
	varDisabled       = "OTEL_SDK_DISABLED"
	varExporter       = "OTEL_TRACES_EXPORTER"
	varEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	varTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	varSampler        = "OTEL_TRACES_SAMPLER"
	varSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"
	varServiceName    = "OTEL_SERVICE_NAME"
	varResource       = "OTEL_RESOURCE_ATTRIBUTES"
)

// defaultEndpoint is where spans go when only OTEL_TRACES_EXPORTER=otlp is set: a collector on this host.
const defaultEndpoint = "http://localhost:4318/v1/traces"

// FromEnv reads the traces' configuration from environ (never from the process environment). Traces are on when
// OTEL_TRACES_EXPORTER is otlp, or is unset and OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set; they are off when OTEL_TRACES_EXPORTER is none or OTEL_SDK_DISABLED is true. OTEL_SERVICE_NAME,
// OTEL_TRACES_SAMPLER or OTEL_RESOURCE_ATTRIBUTES alone do not switch them on: a service name set for another signal
// must not make the gateway send spans to a collector that is not there. Off, the Config is the zero one, and the
// other OTEL_* variables are not checked: they may be set for another program or signal. The error reports every
// problem at once, each naming its variable; values that may hold credentials (headers) are never repeated.
func FromEnv(environ map[string]string) (Config, error) {
	var c Config
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	disabled := false
	if v := strings.TrimSpace(environ[varDisabled]); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(varDisabled, "must be true or false (got %q)", v)
		}
		disabled = b
	}
	switch exp := strings.ToLower(strings.TrimSpace(environ[varExporter])); exp {
	case "":
		c.Enabled = environ[varEndpoint] != "" || environ[varTracesEndpoint] != ""
	case "otlp":
		c.Enabled = true
	case "none":
	default:
		bad(varExporter, "must be otlp or none (got %q): this build exports OTLP over HTTP only", exp)
	}
	if !c.Enabled || disabled {
		return Config{}, errors.Join(errs...)
	}
	var err error
	if c.Endpoint, err = endpoint(environ); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.exporter(environ), c.sampler(environ), c.resource(environ))
	return c, errors.Join(errs...)
}

// endpoint returns the URL spans are sent to.
func endpoint(environ map[string]string) (string, error) {
	name, raw, base := varTracesEndpoint, environ[varTracesEndpoint], false
	if raw == "" {
		name, raw, base = varEndpoint, environ[varEndpoint], true
	}
	if raw == "" {
		return defaultEndpoint, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s: must be an absolute http or https URL without query or fragment", name)
	}
	if base { // the base URL of every signal: the traces' path is appended
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		u.RawPath = ""
	}
	return u.String(), nil
}

// signalVar returns the value of OTEL_EXPORTER_OTLP_TRACES_<suffix>, else OTEL_EXPORTER_OTLP_<suffix>, and the name it
// was read from.
func signalVar(environ map[string]string, suffix string) (name, value string) {
	if v := environ["OTEL_EXPORTER_OTLP_TRACES_"+suffix]; v != "" {
		return "OTEL_EXPORTER_OTLP_TRACES_" + suffix, v
	}
	return "OTEL_EXPORTER_OTLP_" + suffix, environ["OTEL_EXPORTER_OTLP_"+suffix]
}

// exporter reads the exporter's protocol, headers, timeout and compression.
func (c *Config) exporter(environ map[string]string) error {
	var errs []error
	name, v := signalVar(environ, "PROTOCOL")
	switch c.Protocol = cmp.Or(strings.TrimSpace(v), ProtocolProtobuf); c.Protocol {
	case ProtocolProtobuf, ProtocolJSON:
	default:
		errs = append(errs, fmt.Errorf("%s: must be http/protobuf or http/json (got %q): this build exports OTLP over HTTP only", name, c.Protocol))
	}
	name, v = signalVar(environ, "HEADERS")
	if v != "" {
		h, err := parseList(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: must be key=value pairs separated by commas, percent-encoded", name))
		}
		c.Headers = make(map[string]string, len(h))
		for _, kv := range h {
			c.Headers[kv[0]] = kv[1]
		}
	}
	c.Timeout = 10 * time.Second
	if name, v = signalVar(environ, "TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || ms <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be a positive number of milliseconds (got %q)", name, v))
		}
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	switch name, v = signalVar(environ, "COMPRESSION"); strings.TrimSpace(v) {
	case "", "none":
	case "gzip":
		c.Gzip = true
	default:
		errs = append(errs, fmt.Errorf("%s: must be gzip or none (got %q)", name, v))
	}
	return errors.Join(errs...)
}

// sampler reads OTEL_TRACES_SAMPLER and its argument.
func (c *Config) sampler(environ map[string]string) error {
	c.Sampler = cmp.Or(strings.ToLower(strings.TrimSpace(environ[varSampler])), "parentbased_always_on")
	c.SamplerArg = 1
	switch c.Sampler {
	case "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
	default:
		return fmt.Errorf("%s: must be always_on, always_off, traceidratio, parentbased_always_on, "+
			"parentbased_always_off or parentbased_traceidratio (got %q)", varSampler, c.Sampler)
	}
	if v := strings.TrimSpace(environ[varSamplerArg]); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("%s: must be a ratio from 0 to 1 (got %q)", varSamplerArg, v)
		}
		c.SamplerArg = f
	}
	return nil
}

// resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func (c *Config) resource(environ map[string]string) error {
	var err error
	if v := environ[varResource]; v != "" {
		if c.Attributes, err = parseList(v); err != nil {
			err = fmt.Errorf("%s: must be key=value pairs separated by commas, percent-encoded", varResource)
		}
	}
	for _, kv := range c.Attributes {
		if kv[0] == "service.name" {
			c.ServiceName = kv[1]
		}
	}
	c.ServiceName = cmp.Or(strings.TrimSpace(environ[varServiceName]), c.ServiceName)
	return err
}

// parseList parses the W3C-baggage-like lists of OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS:
// key=value pairs separated by commas, values percent-encoded. It stops at the first malformed pair.
func parseList(s string) ([][2]string, error) {
	var out [][2]string
	for item := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return out, errors.New("malformed pair")
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return out, err
		}
		out = append(out, [2]string{k, dv})
	}
	return out, nil
}

// RedactedEndpoint is Endpoint with any password replaced, for logs.
func (c Config) RedactedEndpoint() string {
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return ""
	}
	return u.Redacted()
}
