package loglab

import (
	"os/exec"
	"syscall"
)

// detach puts a process the lab starts (a consumer, an all-in-one) in its
// own process group, so that a Ctrl-C at the terminal reaches the lab
// alone and the lab stops its children in order; and has the kernel kill
// the child if the lab dies first.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
