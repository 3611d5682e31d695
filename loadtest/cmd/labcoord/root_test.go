package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestRunRefusesRemoteServers(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--zk", "10.0.0.1:2181", "--etcd", "127.0.0.1:2479"},
		{"run", "--zk", "127.0.0.1:2282", "--etcd", "example.com:2379"},
	} {
		var out, errb bytes.Buffer
		root := newRoot(&out, &errb)
		root.SetArgs(args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "not on loopback") {
			t.Errorf("%v: err = %v; want a refusal of the non-loopback server", args, err)
		}
	}
}

func TestRunNeedsServers(t *testing.T) {
	t.Setenv("HERALD_LAB_ZK", "")
	t.Setenv("HERALD_LAB_ETCD", "")
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	root.SetArgs([]string{"run"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "no ZooKeeper servers") {
		t.Errorf("run without servers: err = %v; want no ZooKeeper servers", err)
	}
}

func TestSplitList(t *testing.T) {
	if got, want := splitList(" a:1, ,b:2,"), []string{"a:1", "b:2"}; !slices.Equal(got, want) {
		t.Errorf("splitList = %q; want %q", got, want)
	}
	if !isLoopback("localhost:2181") || !isLoopback("[::1]:2379") || isLoopback("192.168.1.2:2379") {
		t.Error("isLoopback misjudges localhost, ::1 or a private address")
	}
}
