//go:build !linux

package devstack

import "syscall"

func setPdeathsig(*syscall.SysProcAttr) {}
