package checks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// CmdSolutions runs every test of each day against its reference solution.
func CmdSolutions(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
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
		args := []string{"test"}
		args = append(args, r.Race(ctx)...)
		args = append(args, "-count=1", "-shuffle=on", "-overlay="+overlay)
		args = append(args, inv.Extra...)
		args = append(args, d.Pkg()+"/...")
		if err := r.Run(ctx, core.RunOpts{Timeout: core.TestTimeout}, "go", args...); err != nil {
			fmt.Printf("%s: the reference solution FAILED (%v)\n", d.Dir, err)
			fmt.Printf("  to reproduce: go test -overlay=\"$(go run ./internal/kata overlay %s)\" %s/...\n", d.Num, d.Pkg())
			failed = append(failed, d.Dir)
			continue
		}
		fmt.Printf("%s: the reference solution passes\n", d.Dir)
	}
	if len(failed) > 0 {
		return fmt.Errorf("reference solutions failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// CmdOverlay writes the solution overlay to .bin/overlay.json and prints its
// path, for go commands typed by hand:
//
//	go test -overlay="$(go run ./internal/kata overlay)" ./day48_client_streaming
func CmdOverlay(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil {
		return err
	}
	replace, err := core.SolutionOverlay(days)
	if err != nil {
		return err
	}
	data, err := core.OverlayJSON(replace)
	if err != nil {
		return err
	}
	path := filepath.Join(r.Root, ".bin", "overlay.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

// CmdBench runs each day's benchmarks against its reference solution.
func CmdBench(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
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
		args := []string{"test", "-run=^$", "-bench=.", "-benchmem", "-overlay=" + overlay}
		args = append(args, inv.Extra...)
		args = append(args, d.Pkg()+"/...")
		if err := r.Run(ctx, core.RunOpts{Timeout: core.BenchTimeout}, "go", args...); err != nil {
			fmt.Printf("%s: benchmarks FAILED (%v)\n", d.Dir, err)
			failed = append(failed, d.Dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("benchmarks failed: %s", strings.Join(failed, ", "))
	}
	return nil
}
