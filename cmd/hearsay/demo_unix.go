//go:build unix

package main

import (
	"os"
	"os/exec"
	"os/signal"
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

// ignoreBrokenPipe keeps the demo alive when its output is a pipe whose
// reader is gone (Ctrl-C on "hearsay demo | tee log" stops tee too): writes
// then fail instead of killing the demo with SIGPIPE before it has stopped
// its agents and removed its data directory.
func ignoreBrokenPipe() { signal.Ignore(syscall.SIGPIPE) }
