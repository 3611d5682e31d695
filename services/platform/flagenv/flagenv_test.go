package flagenv

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

type vals struct {
	s    string
	l    []string
	i    int
	i64  int64
	d    time.Duration
	b    bool
	bDef bool
}

func bind(getenv func(string) string) (*Set, *vals) {
	s := New("test", getenv, io.Discard)
	v := &vals{}
	s.String(&v.s, "name", "HERALD_NAME", "def", "a string")
	s.List(&v.l, "hosts", "HERALD_HOSTS", []string{"a", "b"}, "a list")
	s.Int(&v.i, "n", "HERALD_N", 3, "an int")
	s.Int64(&v.i64, "big", "HERALD_BIG", 4, "an int64")
	s.Duration(&v.d, "wait", "HERALD_WAIT", time.Second, "a duration")
	s.Bool(&v.b, "json", "HERALD_JSON", false, "a bool")
	s.Bool(&v.bDef, "on", "HERALD_ON", true, "a bool on by default")
	return s, v
}

func TestDefaultsEnvAndFlags(t *testing.T) {
	s, v := bind(env(nil))
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if v.s != "def" || !slices.Equal(v.l, []string{"a", "b"}) || v.i != 3 || v.i64 != 4 || v.d != time.Second || v.b || !v.bDef {
		t.Errorf("defaults = %+v", *v)
	}

	s, v = bind(env(map[string]string{"HERALD_NAME": "e", "HERALD_HOSTS": "x,y,z", "HERALD_N": "7", "HERALD_BIG": "9", "HERALD_WAIT": "2m", "HERALD_JSON": "true", "HERALD_ON": "false"}))
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if v.s != "e" || !slices.Equal(v.l, []string{"x", "y", "z"}) || v.i != 7 || v.i64 != 9 || v.d != 2*time.Minute || !v.b || v.bDef {
		t.Errorf("from the environment = %+v", *v)
	}

	s, v = bind(env(map[string]string{"HERALD_NAME": "e", "HERALD_N": "7", "HERALD_JSON": "true"}))
	if err := s.Parse([]string{"-name", "f", "-n", "8", "-hosts", "q", "-json=false"}); err != nil {
		t.Fatal(err)
	}
	if v.s != "f" || v.i != 8 || !slices.Equal(v.l, []string{"q"}) || v.b {
		t.Errorf("flags over the environment = %+v; want the flags to win", *v)
	}
	if want := []string{"HERALD_BIG", "HERALD_HOSTS", "HERALD_JSON", "HERALD_N", "HERALD_NAME", "HERALD_ON", "HERALD_WAIT"}; !slices.Equal(s.Vars(), want) {
		t.Errorf("Vars() = %v; want %v", s.Vars(), want)
	}
}

// TestBadVariables: a variable that does not parse is an error naming the
// variable and its value, never ignored; "false" is false.
func TestBadVariables(t *testing.T) {
	for name, value := range map[string]string{
		"HERALD_N": "ten", "HERALD_BIG": "1e3", "HERALD_WAIT": "5", "HERALD_JSON": "yes",
	} {
		s, _ := bind(env(map[string]string{name: value}))
		err := s.Parse(nil)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), `"`+value+`"`) {
			t.Errorf("Parse with %s=%q = %v; want an error naming the variable and the value", name, value, err)
		}
	}
}

func TestUsageNamesTheVariable(t *testing.T) {
	s, _ := bind(env(nil))
	var b strings.Builder
	s.SetOutput(&b)
	s.PrintDefaults()
	for _, v := range s.Vars() {
		if !strings.Contains(b.String(), "("+v+")") {
			t.Errorf("usage does not name %s:\n%s", v, b.String())
		}
	}
}
