// Package flagenv binds each command-line flag of a Herald binary to a
// HERALD_* environment variable: the variable sets the default, and the
// flag, when given, wins. Every flag has its variable and every variable
// its flag, so an operator can configure a binary either way, and `-help`
// lists both.
//
// A variable whose value does not parse is an error that names the
// variable and the value; Parse returns it, and main exits with status 2,
// as the flag package does for a bad flag.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Set is a flag.FlagSet whose flags read their defaults from the
// environment.
type Set struct {
	*flag.FlagSet
	getenv func(string) string
	vars   []string
	errs   []error
}

// New returns an empty Set for the binary name, reading variables with
// getenv (os.Getenv in main, a map in tests). Parse errors are returned,
// not printed and exited on; usage goes to output.
func New(name string, getenv func(string) string, output io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	return &Set{FlagSet: fs, getenv: getenv}
}

// Vars lists the variables bound so far, sorted.
func (s *Set) Vars() []string {
	v := slices.Clone(s.vars)
	slices.Sort(v)
	return v
}

// lookup returns the variable's value, and records the variable.
func (s *Set) lookup(name string) (string, bool) {
	if slices.Contains(s.vars, name) {
		panic("flagenv: variable " + name + " bound twice")
	}
	s.vars = append(s.vars, name)
	v := s.getenv(name)
	return v, v != ""
}

func usage(u, env string) string { return u + " (" + env + ")" }

func (s *Set) bad(env, value string, err error) {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		err = ne.Err
	}
	s.errs = append(s.errs, fmt.Errorf("%s=%q: %w", env, value, err))
}

// String defines a string flag name whose default is env's value, or def.
func (s *Set) String(p *string, name, env, def, u string) {
	if v, ok := s.lookup(env); ok {
		def = v
	}
	s.StringVar(p, name, def, usage(u, env))
}

// List defines a comma-separated list flag.
func (s *Set) List(p *[]string, name, env string, def []string, u string) {
	d := strings.Join(def, ",")
	if v, ok := s.lookup(env); ok {
		d = v
	}
	*p = split(d)
	s.Func(name, usage(u, env)+" (default "+strconv.Quote(d)+")", func(v string) error {
		*p = split(v)
		return nil
	})
}

func split(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// Int defines an int flag.
func (s *Set) Int(p *int, name, env string, def int, u string) {
	if v, ok := s.lookup(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.bad(env, v, err)
		} else {
			def = n
		}
	}
	s.IntVar(p, name, def, usage(u, env))
}

// Int64 defines an int64 flag.
func (s *Set) Int64(p *int64, name, env string, def int64, u string) {
	if v, ok := s.lookup(env); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.bad(env, v, err)
		} else {
			def = n
		}
	}
	s.Int64Var(p, name, def, usage(u, env))
}

// Duration defines a time.Duration flag.
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, u string) {
	if v, ok := s.lookup(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.bad(env, v, errors.New("not a duration such as 5s or 10m"))
		} else {
			def = d
		}
	}
	s.DurationVar(p, name, def, usage(u, env))
}

// Bool defines a bool flag. The variable takes what strconv.ParseBool
// does: 1, t, true, 0, f, false, in any case.
func (s *Set) Bool(p *bool, name, env string, def bool, u string) {
	if v, ok := s.lookup(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.bad(env, v, errors.New("not a boolean (true or false)"))
		} else {
			def = b
		}
	}
	s.BoolVar(p, name, def, usage(u, env))
}

// Var defines a flag of any flag.Value, such as a rate limit, whose
// default is v's value before the call, or env's value, which v.Set parses.
func (s *Set) Var(v flag.Value, name, env, u string) {
	if e, ok := s.lookup(env); ok {
		if err := v.Set(e); err != nil {
			s.bad(env, e, err)
		}
	}
	s.FlagSet.Var(v, name, usage(u, env))
}

// Parse reads the environment's errors, then parses args. It returns every
// variable that did not parse, or the flag package's error for a bad flag
// (flag.ErrHelp for -help).
func (s *Set) Parse(args []string) error {
	if err := errors.Join(s.errs...); err != nil {
		return err
	}
	return s.FlagSet.Parse(args)
}
