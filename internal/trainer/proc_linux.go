package trainer

import "syscall"

// sysProcAttr starts the trainer in a process group of its own, so that a
// signal reaches a trainer started through a shell or a launcher, and has
// the kernel kill it when the runner dies: a node that dies takes its
// trainer with it rather than leave it writing into a folder no one
// uploads.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
