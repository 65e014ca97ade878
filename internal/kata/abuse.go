package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// abuseTimeout bounds the whole abuse suite run against live servers.
const abuseTimeout = 5 * time.Minute

// abuseSpec is a day's "abuse" section in kata.json: the flags its server
// is started with for the abuse suite, which shrink limits that the
// attacks would otherwise wait out (the idle limit of a client stream).
// "{{dir}}" in a flag stands for a new empty folder, whose path the suite
// gets in ABUSE_DIR_<day>.
type abuseSpec struct {
	ServerArgs []string `json:"server_args"`
}

// cmdAbuse starts every day's reference server on 127.0.0.1, as its
// README says (go run ./DAY -serve -addr ... -debug-addr ...), and runs
// the abuse suite in internal/abuse against them over real TCP. It prints
// the table that RELIABILITY.md holds. The suite reads each server's
// goroutines and live heap from its debug address, and its files from
// its folder.
func cmdAbuse(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	grpcurl, err := r.buildGrpcurl(ctx) // for the servers' health checks
	if err != nil {
		return err
	}
	env := os.Environ()
	var tests []string
	for _, d := range days {
		tests = append(tests, "TestDay"+d.num)
	}
	pattern := "^(" + strings.Join(tests, "|") + ")$"
	var run func(i int) error
	run = func(i int) error {
		if i == len(days) {
			return r.runAbuseSuite(ctx, env, pattern)
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
		env = append(env, fmt.Sprintf("ABUSE_ADDR_%s=%s", d.num, addr), fmt.Sprintf("ABUSE_DEBUG_%s=%s", d.num, debugAddr))
		// A folder of the server's own, which the suite may look into
		// (Day 48 stores its uploads there).
		dataDir, err := os.MkdirTemp("", "abuse-day"+d.num+"-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
		env = append(env, fmt.Sprintf("ABUSE_DIR_%s=%s", d.num, dataDir))
		args := []string{"./" + d.dir, "-serve", "-addr", addr, "-debug-addr", debugAddr}
		if d.kata.Abuse != nil {
			for _, a := range d.kata.Abuse.ServerArgs {
				args = append(args, strings.ReplaceAll(a, "{{dir}}", dataDir))
			}
		}
		return r.withReferenceServer(ctx, d, args, addr, grpcurl, func(*server) error {
			return run(i + 1)
		})
	}
	return run(0)
}

// runAbuseSuite runs internal/abuse with the servers' addresses in env
// and prints its result rows as a table.
func (r *repo) runAbuseSuite(ctx context.Context, env []string, pattern string) error {
	var out bytes.Buffer
	err := r.run(ctx, runOpts{timeout: abuseTimeout, stdout: &out, stderr: &out, env: env}, "go", "test", "-count=1", "-v", "-run", pattern, "./internal/abuse")
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
