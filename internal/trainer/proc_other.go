//go:build !linux

package trainer

import "syscall"

// sysProcAttr starts the trainer in a process group of its own, so that a
// signal reaches a trainer started through a shell or a launcher.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
