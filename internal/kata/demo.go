package main

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
)

// cmdDemo runs each day's program with the reference solution swapped in.
// Without -check it is interactive: the arguments after -- go to the
// program, and Ctrl+C reaches it as if it were started with go run. With
// -check it runs the manifest's demo arguments within the manifest's time
// limit, on the reference and on the untouched stubs.
func cmdDemo(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	if inv.flag("check") && inv.extra != nil {
		return errors.New("-check runs the arguments in kata.json demo.args; do not pass arguments after --")
	}
	overlay, remove, err := referenceOverlay(days)
	if err != nil {
		return err
	}
	defer remove()

	var failed []string
	for _, d := range days {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if inv.flag("check") {
			if err := r.checkDemo(ctx, d, overlay); err != nil {
				fmt.Printf("day%s demo: FAILED: %v\n", d.num, err)
				failed = append(failed, d.dir)
				continue
			}
			fmt.Printf("day%s demo: the reference runs to completion and the stubs say what is missing\n", d.num)
			continue
		}
		// The program gets Ctrl+C straight from the terminal; the
		// runner, which catches it too, must not kill the program
		// before it has shut down, so the program's context ignores
		// the interrupt. The loop then stops at the next day.
		args := append([]string{"run", "-overlay=" + overlay, d.pkg()}, inv.extra...)
		if err := r.run(context.WithoutCancel(ctx), runOpts{interactive: true}, "go", args...); err != nil {
			if ctx.Err() != nil {
				return nil // the user stopped the demo
			}
			failed = append(failed, d.dir)
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
func (r *repo) checkDemo(ctx context.Context, d day, overlay string) error {
	demo := d.kata.Demo
	timeout := time.Duration(demo.TimeoutSeconds) * time.Second

	fmt.Printf("day%s demo: running the reference (limit %v)\n", d.num, timeout)
	args := append([]string{"run", "-overlay=" + overlay, d.pkg()}, demo.Args...)
	if err := r.run(ctx, runOpts{timeout: timeout}, "go", args...); err != nil {
		return fmt.Errorf("the reference demo: %w", err)
	}

	fmt.Printf("day%s demo: running the untouched stubs (limit %v)\n", d.num, timeout)
	// One writer for both streams: exec then copies them with a single
	// goroutine, so the buffer needs no lock.
	var out bytes.Buffer
	tee := io.MultiWriter(os.Stdout, &out)
	args = append([]string{"run", d.pkg()}, demo.Args...)
	err := r.run(ctx, runOpts{timeout: timeout, stdout: tee, stderr: tee}, "go", args...)
	if err != nil && !exitedNonZero(err) {
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
