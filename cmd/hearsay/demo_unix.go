//go:build unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setDemoProcAttr puts a demo agent in its own process group, so that a
// Ctrl-C in the terminal reaches only the demo, which then stops the agents
// in order.
func setDemoProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

// terminate asks a process to stop gracefully.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
