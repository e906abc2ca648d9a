package token

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseBearer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
		err  error
	}{
		{"Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl", nil},
		{"bearer abc", "abc", nil},
		{"BEARER abc", "abc", nil},
		{"Bearer   abc", "abc", nil},
		{"Bearer abc==", "abc==", nil},
		{"Bearer a+b/c~", "a+b/c~", nil},
		{"", "", ErrNoBearer},
		{"Basic dXNlcjpwYXNz", "", ErrNoBearer},
		{"Bearer", "", ErrMalformedBearer},
		{"Bearerabc", "", ErrNoBearer},
		{"Bearer ", "", ErrMalformedBearer},
		{"Bearer abc def", "", ErrMalformedBearer},
		{"Bearer abc ", "", ErrMalformedBearer},
		{"Bearer ab=c", "", ErrMalformedBearer},
		{"Bearer =abc", "", ErrMalformedBearer},
		{"Bearer abc\"", "", ErrMalformedBearer},
		{"Bearer " + strings.Repeat("a", 17<<10), "", ErrMalformedBearer},
	}
	for _, tt := range tests {
		got, err := ParseBearer(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("ParseBearer(%.40q): got %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestBearerTokenHeaderOnly(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	if _, err := BearerToken(h); !errors.Is(err, ErrNoBearer) {
		t.Errorf("no header: got %v, want ErrNoBearer", err)
	}
	h.Add("Authorization", "Bearer a")
	h.Add("Authorization", "Bearer b")
	if _, err := BearerToken(h); !errors.Is(err, ErrMultipleAuthorization) {
		t.Errorf("two headers: got %v, want ErrMultipleAuthorization", err)
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Basic x", "Bearer ", "Bearer a==", "Bearer\tx", "Bearer a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseBearer(s)
		if err != nil {
			if tok != "" {
				t.Fatalf("error %v with token %q", err, tok)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n\",;\\") {
			t.Fatalf("accepted token %q from %q", tok, s)
		}
		if !strings.HasSuffix(s, tok) || !strings.EqualFold(s[:6], "bearer") {
			t.Fatalf("token %q is not the tail of a Bearer header %q", tok, s)
		}
	})
}
