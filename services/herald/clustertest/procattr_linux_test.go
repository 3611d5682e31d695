package clustertest

import "syscall"

// sysProcAttr makes the kernel kill an instance if the test process dies
// first, so an interrupted run leaves no service processes behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
