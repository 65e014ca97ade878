package core

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"testing"
)

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"-count=1":          "-count=1",
		"./day48_x/...":     "./day48_x/...",
		"^(TestA|TestB)$":   "'^(TestA|TestB)$'",
		"it's":              `'it'\''s'`,
		"":                  "''",
		"-overlay=/tmp/o.j": "-overlay=/tmp/o.j",
	}
	for in, want := range tests {
		if got := ShellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"go", []string{"test", "-run", "^(A)$", "./day48"}, "go test -run '^(A)$' ./day48"},
		{"/repo/.bin/buf", []string{"lint"}, ".bin/buf lint"},
		{"/elsewhere/gofmt", []string{"-l"}, "/elsewhere/gofmt -l"},
	}
	for _, tc := range tests {
		if got := commandLine("/repo", tc.name, tc.args); got != tc.want {
			t.Errorf("commandLine(%q, %q) = %q, want %q", tc.name, tc.args, got, tc.want)
		}
	}
}

func TestExitedNonZero(t *testing.T) {
	exit := &exec.ExitError{}
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("go test: %w", exit), true},
		{fmt.Errorf("go test: %w", exec.ErrNotFound), false},
		{fmt.Errorf("go test %w after 1s", errTimeout), false},
		{fmt.Errorf("go test interrupted: %w", context.Canceled), false},
		{errors.New("other"), false},
	}
	for _, tc := range tests {
		if got := ExitedNonZero(tc.err); got != tc.want {
			t.Errorf("exitedNonZero(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
