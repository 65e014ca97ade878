package checks

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// abuseTimeout bounds the whole abuse suite run against live servers.
const abuseTimeout = 5 * time.Minute

// CmdAbuse starts every day's reference server on 127.0.0.1, as its
// README says (go run ./DAY -serve -addr ... -debug-addr ...), and runs
// the abuse suite in internal/abuse against them over real TCP. It prints
// the table that RELIABILITY.md holds. The suite reads each server's
// goroutines and live heap from its debug address, and its files from
// its folder.
func CmdAbuse(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	grpcurl, err := buildGrpcurl(ctx, r) // for the servers' health checks
	if err != nil {
		return err
	}
	env := os.Environ()
	var tests []string
	for _, d := range days {
		tests = append(tests, "TestDay"+d.Num)
	}
	pattern := "^(" + strings.Join(tests, "|") + ")$"
	var run func(i int) error
	run = func(i int) error {
		if i == len(days) {
			return runAbuseSuite(ctx, r, env, pattern)
		}
		d := days[i]
		addr, err := freeLoopbackAddr()
		if err != nil {
			return err
		}
		debugAddr, err := freeLoopbackAddr()
		if err != nil {
			return err
		}
		env = append(env, fmt.Sprintf("ABUSE_ADDR_%s=%s", d.Num, addr), fmt.Sprintf("ABUSE_DEBUG_%s=%s", d.Num, debugAddr))
		// A folder of the server's own, which the suite may look into
		// (Day 48 stores its uploads there).
		dataDir, err := os.MkdirTemp("", "abuse-day"+d.Num+"-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
		env = append(env, fmt.Sprintf("ABUSE_DIR_%s=%s", d.Num, dataDir))
		args := []string{"./" + d.Dir, "-serve", "-addr", addr, "-debug-addr", debugAddr}
		if d.Kata.Abuse != nil {
			for _, a := range d.Kata.Abuse.ServerArgs {
				args = append(args, strings.ReplaceAll(a, "{{dir}}", dataDir))
			}
		}
		return r.WithReferenceServer(ctx, d, args, addr, grpcurl, func(*core.Server) error {
			return run(i + 1)
		})
	}
	return run(0)
}

// runAbuseSuite runs internal/abuse with the servers' addresses in env
// and prints its result rows as a table.
func runAbuseSuite(ctx context.Context, r *core.Repo, env []string, pattern string) error {
	var out bytes.Buffer
	err := r.Run(ctx, core.RunOpts{Timeout: abuseTimeout, Stdout: &out, Stderr: &out, Env: env}, "go", "test", "-count=1", "-v", "-run", pattern, "./internal/abuse")
	var rows []string
	for _, line := range strings.Split(out.String(), "\n") {
		if _, row, ok := strings.Cut(line, "RESULT | "); ok {
			rows = append(rows, "| "+row)
		}
	}
	if err != nil {
		fmt.Print(out.String())
		return fmt.Errorf("abuse suite: %w", err)
	}
	fmt.Println("| attack | expected | got | left behind |")
	fmt.Println("|---|---|---|---|")
	for _, row := range rows {
		fmt.Println(row)
	}
	if strings.Contains(out.String(), "--- SKIP") {
		fmt.Print(out.String())
		return fmt.Errorf("abuse suite: some attacks were skipped (their reasons are above)")
	}
	return nil
}
