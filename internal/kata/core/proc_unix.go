//go:build unix

package core

import (
	"os/exec"
	"syscall"
	"time"
)

// OwnProcessGroup starts cmd in a process group of its own and makes
// cancelling it interrupt the whole group. Killing only the go command would
// leave what it started (the test binary, the program of go run) running,
// still holding its port or its files. SIGINT first lets the go command
// remove its temporary build folder and a demo shut down gracefully.
func OwnProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	}
	cmd.WaitDelay = 10 * time.Second
}

// KillProcessGroup kills whatever is left of a cancelled command's group.
func KillProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil && cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
