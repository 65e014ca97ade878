//go:build !unix

package core

import "os/exec"

// ownProcessGroup does nothing here: cancelling a command kills only the
// command itself.
func ownProcessGroup(cmd *exec.Cmd) {}

// killProcessGroup does nothing here.
func killProcessGroup(cmd *exec.Cmd) {}
