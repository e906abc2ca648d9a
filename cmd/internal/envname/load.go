package envname

import (
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Error is a problem with the value of one variable.
type Error struct {
	// Name is the variable.
	Name string
	// Problem says what is wrong with its value, without repeating it (it may be a secret).
	Problem string
	// Err is the cause, if any; its text follows Problem.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Name + ": " + e.Problem + ": " + e.Err.Error()
	}
	return e.Name + ": " + e.Problem
}

func (e *Error) Unwrap() error { return e.Err }

// Config is a program's configuration: a pointer to a struct whose fields have env tags (caarlos0/env's env and
// envDefault, and alias, see Load), which reports every problem with its values at once, each as an *Error.
type Config interface {
	Validate() error
}

// Load sets the fields of cfg from environ with caarlos0/env, never from the process environment (a nil environ is an
// empty one), then validates it. A field tagged alias:"NAME" as well takes the value of NAME when its own variable is
// blank. Load returns every problem at once, joined: one *Error per value that does not parse ("invalid value", or for a
// slog.Level "must be debug, info, warn or error"), then those of cfg.Validate, less any about a variable that did not
// parse (its zero value would only be reported again).
func Load(cfg Config, environ map[string]string) error {
	typ := reflect.TypeOf(cfg).Elem()
	var errs []error
	failed := map[string]bool{}
	for _, err := range flatten(env.ParseWithOptions(cfg, env.Options{Environment: withAliases(environ, typ)})) {
		var pe env.ParseError
		if errors.As(err, &pe) {
			f, _ := typ.FieldByName(pe.Name)
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			failed[name] = true
			err = &Error{Name: name, Problem: "invalid value", Err: pe.Err}
			if pe.Type == reflect.TypeFor[slog.Level]() {
				err = &Error{Name: name, Problem: "must be debug, info, warn or error"}
			}
		}
		errs = append(errs, err)
	}
	for _, err := range flatten(cfg.Validate()) {
		var ve *Error
		if errors.As(err, &ve) && failed[ve.Name] {
			continue
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// withAliases returns a copy of environ, never nil, in which each variable of struct type t whose field is tagged
// alias:"NAME" takes the value of NAME when its own is blank and NAME is not.
func withAliases(environ map[string]string, t reflect.Type) map[string]string {
	out := make(map[string]string, len(environ))
	maps.Copy(out, environ)
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		alias := f.Tag.Get("alias")
		if alias != "" && strings.TrimSpace(out[name]) == "" && strings.TrimSpace(out[alias]) != "" {
			out[name] = out[alias]
		}
	}
	return out
}

// flatten returns the errors err joins, at any depth, or err alone; none for nil.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}
