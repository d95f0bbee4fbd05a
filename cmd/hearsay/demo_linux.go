//go:build linux

package main

import "syscall"

// setParentDeathSignal has Linux send SIGTERM to a demo agent if the demo
// dies without stopping it.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
