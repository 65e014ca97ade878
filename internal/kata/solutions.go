package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// cmdSolutions runs every test of each day against its reference solution.
func cmdSolutions(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
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
		args := []string{"test"}
		args = append(args, r.race(ctx)...)
		args = append(args, "-count=1", "-shuffle=on", "-overlay="+overlay)
		args = append(args, inv.extra...)
		args = append(args, d.pkg()+"/...")
		if err := r.run(ctx, runOpts{timeout: testTimeout}, "go", args...); err != nil {
			fmt.Printf("%s: the reference solution FAILED (%v)\n", d.dir, err)
			fmt.Printf("  to reproduce: go test -overlay=\"$(go run ./internal/kata overlay %s)\" %s/...\n", d.num, d.pkg())
			failed = append(failed, d.dir)
			continue
		}
		fmt.Printf("%s: the reference solution passes\n", d.dir)
	}
	if len(failed) > 0 {
		return fmt.Errorf("reference solutions failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// cmdOverlay writes the solution overlay to .bin/overlay.json and prints its
// path, for go commands typed by hand:
//
//	go test -overlay="$(go run ./internal/kata overlay)" ./day48_client_streaming
func cmdOverlay(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil {
		return err
	}
	replace, err := solutionOverlay(days)
	if err != nil {
		return err
	}
	data, err := overlayJSON(replace)
	if err != nil {
		return err
	}
	path := filepath.Join(r.root, ".bin", "overlay.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

// cmdBench runs each day's benchmarks against its reference solution.
func cmdBench(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
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
		args := []string{"test", "-run=^$", "-bench=.", "-benchmem", "-overlay=" + overlay}
		args = append(args, inv.extra...)
		args = append(args, d.pkg()+"/...")
		if err := r.run(ctx, runOpts{timeout: benchTimeout}, "go", args...); err != nil {
			fmt.Printf("%s: benchmarks FAILED (%v)\n", d.dir, err)
			failed = append(failed, d.dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("benchmarks failed: %s", strings.Join(failed, ", "))
	}
	return nil
}
