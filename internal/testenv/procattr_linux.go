package testenv

import "syscall"

// procAttr puts a worker process in its own process group, so a Ctrl-C in
// the terminal reaches only the test binary, which stops it in order; and
// asks the kernel to kill it should the test binary die without doing so
// (a `go test -timeout` panic).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
