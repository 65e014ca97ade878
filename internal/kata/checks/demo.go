package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// CmdDemo runs each day's program with the reference solution swapped in.
// Without -check it is interactive: the arguments after -- go to the
// program, and Ctrl+C reaches it as if it were started with go run. With
// -check it runs the manifest's demo arguments within the manifest's time
// limit, on the reference and on the untouched stubs.
func CmdDemo(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	if inv.Flag("check") && inv.Extra != nil {
		return errors.New("-check runs the arguments in kata.json demo.args; do not pass arguments after --")
	}
	overlay, remove, err := core.ReferenceOverlay(days)
	if err != nil {
		return err
	}
	defer remove()

	var failed []string
	for _, d := range days {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if inv.Flag("check") {
			if err := checkDemo(ctx, r, d, overlay); err != nil {
				fmt.Printf("day%s demo: FAILED: %v\n", d.Num, err)
				failed = append(failed, d.Dir)
				continue
			}
			fmt.Printf("day%s demo: the reference runs to completion and the stubs say what is missing\n", d.Num)
			continue
		}
		// The program gets Ctrl+C straight from the terminal; the
		// runner, which catches it too, must not kill the program
		// before it has shut down, so the program's context ignores
		// the interrupt. The loop then stops at the next day.
		args := append([]string{"run", "-overlay=" + overlay, d.Pkg()}, inv.Extra...)
		if err := r.Run(context.WithoutCancel(ctx), core.RunOpts{Interactive: true}, "go", args...); err != nil {
			if ctx.Err() != nil {
				return nil // the user stopped the demo
			}
			failed = append(failed, d.Dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("demo failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// checkDemo runs the day's demo on the reference, which must finish in time
// and exit 0, and on the untouched stubs, which must finish in time and say
// what is missing without crashing.
func checkDemo(ctx context.Context, r *core.Repo, d core.Day, overlay string) error {
	demo := d.Kata.Demo
	timeout := time.Duration(demo.TimeoutSeconds) * time.Second

	fmt.Printf("day%s demo: running the reference (limit %v)\n", d.Num, timeout)
	args := append([]string{"run", "-overlay=" + overlay, d.Pkg()}, demo.Args...)
	if err := r.Run(ctx, core.RunOpts{Timeout: timeout}, "go", args...); err != nil {
		return fmt.Errorf("the reference demo: %w", err)
	}

	fmt.Printf("day%s demo: running the untouched stubs (limit %v)\n", d.Num, timeout)
	// One writer for both streams: exec then copies them with a single
	// goroutine, so the buffer needs no lock.
	var out bytes.Buffer
	tee := io.MultiWriter(os.Stdout, &out)
	args = append([]string{"run", d.Pkg()}, demo.Args...)
	err := r.Run(ctx, core.RunOpts{Timeout: timeout, Stdout: tee, Stderr: tee}, "go", args...)
	if err != nil && !core.ExitedNonZero(err) {
		return fmt.Errorf("the stub demo: %w", err)
	}
	if problems := checkStubDemoOutput(out.String(), demo.StubOutput); len(problems) > 0 {
		return fmt.Errorf("the stub demo: %s", strings.Join(problems, "; "))
	}
	return nil
}

// traceback matches the header of a goroutine dump, as printed by an
// unrecovered panic or a fatal error.
var traceback = regexp.MustCompile(`(?m)^goroutine \d+ \[`)

// checkStubDemoOutput judges the combined output of the stub demo.
func checkStubDemoOutput(output, want string) []string {
	var problems []string
	if !strings.Contains(output, want) {
		problems = append(problems, fmt.Sprintf("its output does not contain %q (kata.json demo.stub_output)", want))
	}
	if strings.Contains(output, "panic:") {
		problems = append(problems, "it panicked")
	}
	if traceback.MatchString(output) {
		problems = append(problems, "it printed a goroutine traceback")
	}
	return problems
}
