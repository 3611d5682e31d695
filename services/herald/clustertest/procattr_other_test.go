//go:build !linux

package clustertest

import "syscall"

// sysProcAttr has nothing to add where there is no parent-death signal;
// cleanup stops the instances.
func sysProcAttr() *syscall.SysProcAttr { return nil }
