//go:build !unix

package main

import (
	"os"
	"os/exec"
)

// setDemoProcAttr does nothing on systems without process groups.
func setDemoProcAttr(*exec.Cmd) {}

// terminate stops a process; without signals, it kills it.
func terminate(p *os.Process) error { return p.Kill() }

// ignoreBrokenPipe does nothing where there is no SIGPIPE.
func ignoreBrokenPipe() {}
