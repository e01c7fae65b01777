package devstack

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
)

// FreePorts returns each given port, or a free loopback port where it
// is 0; no two zeros get the same port.
func FreePorts(ports ...int) ([]int, error) { return portsOrFree(ports...) }

// FreePort is a free loopback TCP port.
func FreePort() (int, error) {
	p, err := portsOrFree(0)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// portsOrFree returns each given port, or a free loopback port where it is
// 0. A port is free only until someone binds it: between its choice here
// and its server's bind, another process asking the kernel for any port
// (the Temporal dev server picks its internal ports so) could be given
// the same. On Linux each chosen port is therefore left with a connection
// in TIME_WAIT, which keeps the kernel from handing it out again for a
// minute, while a server that binds it by number (with SO_REUSEADDR, as
// Go, MinIO and PostgreSQL do) still can.
func portsOrFree(ports ...int) ([]int, error) {
	out := make([]int, len(ports))
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i, p := range ports {
		if p != 0 {
			out[i] = p
			continue
		}
		// Hold every listener until all ports are chosen, so that two zero
		// ports never get the same number.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("devstack: no free port: %w", err)
		}
		held = append(held, l)
		out[i] = l.Addr().(*net.TCPAddr).Port
		if runtime.GOOS == "linux" {
			if err := leaveTimeWait(l); err != nil {
				return nil, fmt.Errorf("devstack: reserving port %d: %w", out[i], err)
			}
		}
	}
	return out, nil
}

// leaveTimeWait connects to l and closes the connection from l's side
// first, which leaves l's port in TIME_WAIT.
func leaveTimeWait(l net.Listener) error {
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	accepted, err := l.Accept()
	if err != nil {
		return err
	}
	return accepted.Close()
}

// ErrPortTaken marks a server that exited because a port it was to bind
// was taken.
var ErrPortTaken = errors.New("a port it was to bind was taken")

// startTries bounds the starts of a server that finds a port taken.
const startTries = 3

// startRetrying runs start again, on ports chosen afresh, when the server
// it starts exits because another process took one of its ports between
// their choice and its bind. The servers that exited are forgotten.
func (s *Stack) startRetrying(start func() error) error {
	for try := 1; ; try++ {
		err := start()
		if err == nil || try == startTries || !errors.Is(err, ErrPortTaken) {
			return err
		}
		s.procs = slices.DeleteFunc(s.procs, func(p *Process) bool { return p.Exited() != nil })
	}
}
