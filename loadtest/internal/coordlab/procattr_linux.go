package coordlab

import (
	"os/exec"
	"syscall"
)

// detach puts a holder in its own process group, so that a Ctrl-C at the
// terminal reaches the lab alone and the lab stops its holders in order;
// and has the kernel kill the holder if the lab dies first.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
