package envname

import (
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTags(t *testing.T) {
	t.Parallel()
	type config struct {
		Listen  string `env:"APP_LISTEN" envDefault:":80"`
		Level   string `env:"APP_LEVEL,notEmpty"`
		Derived string `env:"-"`
		Plain   string
		Alias   string `env:"LEGACY_NAME"`
	}
	got := Tags(reflect.TypeFor[config]())
	if want := []string{"APP_LISTEN", "APP_LEVEL", "LEGACY_NAME"}; !slices.Equal(got, want) {
		t.Errorf("Tags = %q, want %q", got, want)
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	known := []string{"GATEWAY_REQUIRED_SCOPES", "GATEWAY_LOG_LEVEL", "GATEWAY_PUBLIC_URL", "MCP_URL", "PORT"}
	tests := []struct {
		name    string
		environ map[string]string
		want    []Unknown
	}{
		{name: "nothing set", environ: nil},
		{name: "only known names", environ: map[string]string{"GATEWAY_LOG_LEVEL": "debug", "PORT": "8080", "MCP_URL": "x"}},
		{name: "other prefixes are not checked", environ: map[string]string{"HOME": "/root", "MCP_USE_OAUTH_WORKOS_API_KEY": "sk", "TOOLS_X": "1"}},
		{
			name:    "a missing letter",
			environ: map[string]string{"GATEWAY_REQUIRED_SCOPE": "admin"},
			want:    []Unknown{{Name: "GATEWAY_REQUIRED_SCOPE", Suggestion: "GATEWAY_REQUIRED_SCOPES"}},
		},
		{
			name:    "letter case differs",
			environ: map[string]string{"gateway_log_level": "debug"},
			want:    []Unknown{{Name: "gateway_log_level", Suggestion: "GATEWAY_LOG_LEVEL"}},
		},
		{
			name:    "an empty value is reported too",
			environ: map[string]string{"GATEWAY_PUBLIC_ULR": ""},
			want:    []Unknown{{Name: "GATEWAY_PUBLIC_ULR", Suggestion: "GATEWAY_PUBLIC_URL"}},
		},
		{
			name:    "several, sorted by name",
			environ: map[string]string{"GATEWAY_LOGLEVEL": "debug", "GATEWAY_PUBLIC_URL": "https://x", "GATEWAY_LEVEL": "info"},
			want: []Unknown{
				{Name: "GATEWAY_LEVEL", Suggestion: "GATEWAY_LOG_LEVEL"},
				{Name: "GATEWAY_LOGLEVEL", Suggestion: "GATEWAY_LOG_LEVEL"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Find(tt.environ, []string{"GATEWAY_"}, known); !slices.Equal(got, tt.want) {
				t.Errorf("Find = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFindWithoutKnownNames(t *testing.T) {
	t.Parallel()
	got := Find(map[string]string{"TOOLS_X": "1"}, []string{"TOOLS_"}, nil)
	if want := []Unknown{{Name: "TOOLS_X"}}; !slices.Equal(got, want) {
		t.Errorf("Find = %+v, want %+v", got, want)
	}
}

func TestDistance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "ABC", 3},
		{"ABC", "", 3},
		{"KITTEN", "SITTING", 3},
		{"GATEWAY_REQUIRED_SCOPE", "GATEWAY_REQUIRED_SCOPES", 1},
		{"SAME", "SAME", 0},
		{"AB", "BA", 2},
	} {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := distance(tt.b, tt.a); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.b, tt.a, got, tt.want)
		}
	}
}

// loadConfig is a configuration for TestLoad.
type loadConfig struct {
	Addr  string        `env:"APP_ADDR" envDefault:":80"`
	Key   string        `env:"APP_KEY" alias:"LEGACY_KEY"`
	Wait  time.Duration `env:"APP_WAIT" envDefault:"1s"`
	Level slog.Level    `env:"APP_LEVEL" envDefault:"info"`
}

func (c loadConfig) Validate() error {
	var errs []error
	if c.Wait <= 0 {
		errs = append(errs, &Error{Name: "APP_WAIT", Problem: "must be positive"})
	}
	if c.Addr == "" {
		errs = append(errs, &Error{Name: "APP_ADDR", Problem: "must be set"})
	}
	return errors.Join(errs...)
}

func TestLoad(t *testing.T) {
	t.Setenv("APP_ADDR", "from the process")
	tests := []struct {
		name    string
		environ map[string]string
		want    loadConfig
		wantErr []string // the problems, in order
	}{
		{name: "nil is empty, not the process environment", want: loadConfig{Addr: ":80", Wait: time.Second}},
		{name: "alias", environ: map[string]string{"LEGACY_KEY": "k"}, want: loadConfig{Addr: ":80", Key: "k", Wait: time.Second}},
		{name: "blank variable takes its alias", environ: map[string]string{"APP_KEY": " ", "LEGACY_KEY": "k"},
			want: loadConfig{Addr: ":80", Key: "k", Wait: time.Second}},
		{name: "variable over its alias", environ: map[string]string{"APP_KEY": "own", "LEGACY_KEY": "k"},
			want: loadConfig{Addr: ":80", Key: "own", Wait: time.Second}},
		{name: "level", environ: map[string]string{"APP_LEVEL": "DEBUG"}, want: loadConfig{Addr: ":80", Wait: time.Second, Level: slog.LevelDebug}},
		{
			name:    "every problem, a value that does not parse once",
			environ: map[string]string{"APP_WAIT": "soon", "APP_LEVEL": "loud", "APP_ADDR": ""},
			wantErr: []string{`APP_WAIT: invalid value: unable to parse duration: time: invalid duration "soon"`,
				"APP_LEVEL: must be debug, info, warn or error"},
		},
		{name: "validation", environ: map[string]string{"APP_WAIT": "-1s"}, wantErr: []string{"APP_WAIT: must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got loadConfig
			err := Load(&got, tt.environ)
			if tt.wantErr != nil {
				if err == nil || !slices.Equal(strings.Split(err.Error(), "\n"), tt.wantErr) {
					t.Errorf("Load: got error %v, want %q", err, tt.wantErr)
				}
				var e *Error
				if !errors.As(err, &e) || e.Name == "" {
					t.Errorf("Load: got %T, want *Error", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Load: got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
