//go:build !linux

package testenv

import "syscall"

// procAttr puts a worker process in its own process group, so a Ctrl-C in
// the terminal reaches only the test binary, which stops it in order.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
