package envname

import (
	"reflect"
	"slices"
	"testing"
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
