//go:build !linux

package coordlab

import "os/exec"

// detach does nothing here: only Linux has a parent-death signal.
func detach(*exec.Cmd) {}
