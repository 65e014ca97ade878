package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

// goTestJSON runs `go test -json` with the given arguments and parses what
// it reports. Failing tests are not an error here; a command that could not
// run, timed out, or printed nothing a test run would print is.
func (r *repo) goTestJSON(ctx context.Context, args ...string) (*testRun, error) {
	return r.goTestJSONOpts(ctx, false, args...)
}

// goTestJSONOpts is goTestJSON that can leave out printing the command.
func (r *repo) goTestJSONOpts(ctx context.Context, quiet bool, args ...string) (*testRun, error) {
	var stdout, stderr bytes.Buffer
	err := r.run(ctx, runOpts{timeout: testTimeout, stdout: &stdout, stderr: &stderr, quiet: quiet},
		"go", append([]string{"test", "-json"}, args...)...)
	run, perr := parseTestJSON(&stdout)
	if perr != nil {
		return nil, fmt.Errorf("reading go test -json output: %w", perr)
	}
	if err != nil && !exitedNonZero(err) {
		return nil, withStderr(err, stderr.String())
	}
	if err != nil && !run.buildFailed && len(run.order) == 0 {
		// It failed before any test started: the go command said why
		// on stderr (a bad flag, a broken go.mod), or the test binary
		// on stdout (a panic in init or TestMain).
		return nil, withStderr(err, strings.Join(append(run.pkgOutput, stderr.String()), "\n"))
	}
	return run, nil
}

func withStderr(err error, stderr string) error {
	if s := strings.TrimSpace(stderr); s != "" {
		return fmt.Errorf("%w\n%s", err, indent(s, "    "))
	}
	return err
}
