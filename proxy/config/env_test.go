package config

import (
	"slices"
	"strings"
	"testing"
)

// TestDefaultPublicURLFollowsListenPort checks that, without GATEWAY_PUBLIC_URL or MCP_URL, the public URL (and the
// resource identifier, audience and origin built from it) is http://localhost on the port the gateway listens on, and
// that a listen port with no fixed number is a configuration error naming what to set.
func TestDefaultPublicURLFollowsListenPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ map[string]string
		want    string   // the public URL; "" when loading fails
		wantErr []string // variables named by the error, in order
	}{
		{name: "default", want: "http://localhost:3000"},
		{name: "GATEWAY_LISTEN_ADDR", environ: map[string]string{"GATEWAY_LISTEN_ADDR": ":8080"}, want: "http://localhost:8080"},
		{name: "GATEWAY_LISTEN_ADDR with a host", environ: map[string]string{"GATEWAY_LISTEN_ADDR": "127.0.0.1:8443"}, want: "http://localhost:8443"},
		{name: "PORT", environ: map[string]string{"PORT": "8081"}, want: "http://localhost:8081"},
		{name: "HOST and PORT", environ: map[string]string{"HOST": "0.0.0.0", "PORT": "9000"}, want: "http://localhost:9000"},
		{name: "GATEWAY_LISTEN_ADDR wins over PORT", environ: map[string]string{"GATEWAY_LISTEN_ADDR": ":7000", "PORT": "9000"}, want: "http://localhost:7000"},
		{name: "set public URL is kept", environ: map[string]string{"GATEWAY_LISTEN_ADDR": ":8080", "GATEWAY_PUBLIC_URL": "https://mcp.example.com"}, want: "https://mcp.example.com"},
		{name: "MCP_URL is kept", environ: map[string]string{"PORT": "8080", "MCP_URL": "http://127.0.0.1:3000"}, want: "http://127.0.0.1:3000"},
		{name: "port 0 with a public URL", environ: map[string]string{"GATEWAY_LISTEN_ADDR": "127.0.0.1:0", "GATEWAY_PUBLIC_URL": "http://localhost:3000"}, want: "http://localhost:3000"},
		{name: "port 0", environ: map[string]string{"GATEWAY_LISTEN_ADDR": "127.0.0.1:0"}, wantErr: []string{"GATEWAY_PUBLIC_URL"}},
		{name: "PORT 0", environ: map[string]string{"PORT": "0"}, wantErr: []string{"GATEWAY_PUBLIC_URL"}},
		{name: "service name", environ: map[string]string{"GATEWAY_LISTEN_ADDR": ":http"}, wantErr: []string{"GATEWAY_PUBLIC_URL"}},
		{name: "invalid listen address is reported once", environ: map[string]string{"GATEWAY_LISTEN_ADDR": "3000"}, wantErr: []string{"GATEWAY_LISTEN_ADDR"}},
		{name: "invalid listen address and public URL", environ: map[string]string{"GATEWAY_LISTEN_ADDR": "3000", "GATEWAY_PUBLIC_URL": "ftp://x"},
			wantErr: []string{"GATEWAY_PUBLIC_URL", "GATEWAY_LISTEN_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			environ := map[string]string{"GATEWAY_ISSUER_URL": "https://auth.example.com"}
			for k, v := range tt.environ {
				environ[k] = v
			}
			c, err := Load(environ)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("LoadConfig: got public URL %s, want an error", c.Public)
				}
				var named []string
				for line := range strings.Lines(err.Error()) {
					name, _, _ := strings.Cut(line, ":")
					named = append(named, name)
				}
				if !slices.Equal(named, tt.wantErr) {
					t.Errorf("LoadConfig: error names %q, want %q:\n%s", named, tt.wantErr, err)
				}
				if tt.wantErr[0] == "GATEWAY_PUBLIC_URL" && len(tt.wantErr) == 1 && !strings.Contains(err.Error(), "GATEWAY_LISTEN_ADDR") {
					t.Errorf("LoadConfig: the error does not say the listen address is why: %v", err)
				}
				if _, err := DefaultPublicURL(environ); err == nil && tt.environ["GATEWAY_PUBLIC_URL"] == "" {
					t.Errorf("DefaultPublicURL: got no error, want one")
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if got := c.Public.String(); got != tt.want {
				t.Errorf("public URL: got %s, want %s", got, tt.want)
			}
			if got, want := c.Resource, tt.want+"/mcp"; got != want {
				t.Errorf("resource: got %s, want %s", got, want)
			}
			if got, want := c.OriginList, []string{tt.want}; !slices.Equal(got, want) {
				t.Errorf("origins: got %q, want %q", got, want)
			}
			if tt.environ["GATEWAY_PUBLIC_URL"] == "" && tt.environ["MCP_URL"] == "" {
				if got, err := DefaultPublicURL(environ); err != nil || got != tt.want {
					t.Errorf("DefaultPublicURL: got %q, %v; want %q", got, err, tt.want)
				}
			}
		})
	}
}
