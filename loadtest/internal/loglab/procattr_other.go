//go:build !linux

package loglab

import "os/exec"

// detach does nothing here: only Linux has a parent-death signal.
func detach(*exec.Cmd) {}
