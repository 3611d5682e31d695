package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9092":         true,
		"localhost:9092":         true,
		"[::1]:4222":             true,
		"nats://127.0.0.1:4233":  true,
		"nats://localhost:4233":  true,
		"127.0.0.2":              true,
		"10.0.0.1:9092":          false,
		"nats://10.1.2.3:4222":   false,
		"kafka.example.com:9092": false,
		"nats://[::1]:4222":      true,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v; want %v", addr, got, want)
		}
	}
}

// TestRunRefusesRemote: the lab loads and kills what it runs against, so a
// server off this machine stops it before it connects to anything.
func TestRunRefusesRemote(t *testing.T) {
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetArgs([]string{"run", "--nats", "", "--kafka", "10.0.0.1:9092", "--out", t.TempDir()})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "10.0.0.1:9092 is not on loopback") {
		t.Errorf("run --kafka 10.0.0.1:9092: %v; want a refusal naming the address", err)
	}
}

func TestSplitList(t *testing.T) {
	if got := splitList(" a, b,,c "); strings.Join(got, "|") != "a|b|c" {
		t.Errorf("splitList = %q; want [a b c]", got)
	}
	if got := splitList(""); got != nil {
		t.Errorf("splitList(\"\") = %q; want nil", got)
	}
}
