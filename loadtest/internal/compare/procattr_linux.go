package compare

import (
	"os/exec"
	"syscall"
)

// detach puts the server in its own process group, so that a Ctrl-C at
// the terminal reaches feedload alone and feedload stops the server in
// order; and has the kernel stop the server if feedload dies first.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
