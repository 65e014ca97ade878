package core

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

// GoTestJSON runs `go test -json` with the given arguments and parses what
// it reports. Failing tests are not an error here; a command that could not
// run, timed out, or printed nothing a test run would print is.
func (r *Repo) GoTestJSON(ctx context.Context, args ...string) (*TestRun, error) {
	return r.GoTestJSONOpts(ctx, false, args...)
}

// GoTestJSONOpts is goTestJSON that can leave out printing the command.
func (r *Repo) GoTestJSONOpts(ctx context.Context, quiet bool, args ...string) (*TestRun, error) {
	var stdout, stderr bytes.Buffer
	err := r.Run(ctx, RunOpts{Timeout: TestTimeout, Stdout: &stdout, Stderr: &stderr, Quiet: quiet},
		"go", append([]string{"test", "-json"}, args...)...)
	run, perr := ParseTestJSON(&stdout)
	if perr != nil {
		return nil, fmt.Errorf("reading go test -json output: %w", perr)
	}
	if err != nil && !ExitedNonZero(err) {
		return nil, WithStderr(err, stderr.String())
	}
	if err != nil && !run.BuildFailed && len(run.Order) == 0 {
		// It failed before any test started: the go command said why
		// on stderr (a bad flag, a broken go.mod), or the test binary
		// on stdout (a panic in init or TestMain).
		return nil, WithStderr(err, strings.Join(append(run.PkgOutput, stderr.String()), "\n"))
	}
	return run, nil
}

func WithStderr(err error, stderr string) error {
	if s := strings.TrimSpace(stderr); s != "" {
		return fmt.Errorf("%w\n%s", err, Indent(s, "    "))
	}
	return err
}
