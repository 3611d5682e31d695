package node

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-feed/herald/services/platform/flagenv"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoginRead(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          string
	}{
		{"trailing newline", "s3cret\n", "s3cret"},
		{"trailing CRLF", "s3cret\r\n", "s3cret"},
		{"no newline", "s3cret", "s3cret"},
		{"inner spaces kept", " a b \n", " a b "},
	} {
		l := Login{User: "herald", PasswordFile: writeFile(t, tc.content)}
		user, password, err := l.Read("etcd")
		if err != nil || user != "herald" || password != tc.want {
			t.Errorf("%s: Read = %q, %q, %v; want herald, %q, nil", tc.name, user, password, err, tc.want)
		}
	}
	if user, password, err := (Login{}).Read("etcd"); user != "" || password != "" || err != nil {
		t.Errorf("zero Login: Read = %q, %q, %v; want no login and no error", user, password, err)
	}
}

// Each error names the flags, with their variables, and the file.
func TestLoginReadErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent")
	empty := writeFile(t, "\n")
	for _, tc := range []struct {
		name string
		l    Login
		want []string
	}{
		{"user without file", Login{User: "herald"}, []string{"-nats-user (HERALD_NATS_USER)", "-nats-password-file (HERALD_NATS_PASSWORD_FILE)"}},
		{"file without user", Login{PasswordFile: empty}, []string{"-nats-password-file (HERALD_NATS_PASSWORD_FILE) " + empty, "-nats-user"}},
		{"unreadable file", Login{User: "herald", PasswordFile: missing}, []string{"-nats-password-file (HERALD_NATS_PASSWORD_FILE)", missing, "no such file"}},
		{"empty file", Login{User: "herald", PasswordFile: empty}, []string{empty, "empty"}},
	} {
		_, _, err := tc.l.Read("nats")
		if err == nil {
			t.Errorf("%s: Read = nil error; want one naming %q", tc.name, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Read error %q; want it to contain %q", tc.name, err, w)
			}
		}
	}
}

// The flags and their variables: a split binary takes the etcd and NATS
// logins, the all-in-one (embedded servers) neither; New reads the files
// before it opens anything.
func TestLoginFlags(t *testing.T) {
	file := writeFile(t, "pw\n")
	env := map[string]string{"HERALD_ETCD_USER": "herald", "HERALD_ETCD_PASSWORD_FILE": file}
	fs := flagenv.New("test", func(k string) string { return env[k] }, io.Discard)
	f := BindFlags(fs, Config{}, false)
	if err := fs.Parse([]string{"-nats-user", "herald", "-nats-password-file", file}); err != nil {
		t.Fatal(err)
	}
	c := f.c
	if want := (Login{User: "herald", PasswordFile: file}); c.EtcdLogin != want || c.NATSLogin != want {
		t.Errorf("logins = %+v, %+v; want both %+v", c.EtcdLogin, c.NATSLogin, want)
	}
	creds, err := c.readLogins()
	if err != nil || creds.etcdUser != "herald" || creds.etcdPassword != "pw" || len(creds.nats) != 1 {
		t.Errorf("readLogins = %+v, %v; want herald/pw for etcd and one NATS option", creds, err)
	}

	embedded := flagenv.New("test", func(string) string { return "" }, io.Discard)
	BindFlags(embedded, Config{}, true)
	for _, v := range embedded.Vars() {
		if (strings.Contains(v, "_USER") || strings.Contains(v, "_PASSWORD_FILE")) && !strings.HasPrefix(v, "HERALD_KAFKA_") {
			t.Errorf("the all-in-one binds %s; want no etcd or NATS login (only Kafka's, which it does not embed)", v)
		}
	}

	c.NATSLogin.PasswordFile = filepath.Join(t.TempDir(), "absent")
	c.EtcdEndpoints, c.NATSURL = []string{"127.0.0.1:1"}, "nats://127.0.0.1:1"
	if _, err := New(t.Context(), c); err == nil || !strings.Contains(err.Error(), "-nats-password-file") {
		t.Errorf("New with an unreadable NATS password file = %v; want an error naming -nats-password-file", err)
	}
}
