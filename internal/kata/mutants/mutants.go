package mutants

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/mistakes"
)

// minMutantKillRate is the share of a day's mutants its tests must kill.
const minMutantKillRate = 0.90

// mutantTestTimeout bounds one run of a day's tests against one mutant. A
// mutant that makes a test hang is killed by it: the tests' own deadlines
// fail it within seconds, and this catches anything they miss.
const mutantTestTimeout = 90 * time.Second

// mutantWorkers is how many mutants run at once. A test run spends most of
// its time waiting on streams and deadlines, so a few share two cores.
var mutantWorkers = 3 * runtime.NumCPU()

// mutantResult is the outcome of the tests against one mutant.
type mutantResult struct {
	mutant
	killed bool
	// unsteady, when set, says in how many runs a mutant that was not
	// killed every time was killed: a verdict that depends on timing.
	unsteady string
	killedBy string // the first failing test, or why the run failed
	elapsed  time.Duration
	output   string
}

// CmdMutants runs every day's tests against systematic mutants of its
// reference (see mutate.go) and fails when a day's kill rate is below
// minMutantKillRate. -sample N checks N mutants per day, spread evenly
// over the file, and says so; -list prints the mutants without running.
func CmdMutants(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	sample := 0
	if s := inv.Flags["sample"]; s != "" {
		if sample, err = strconv.Atoi(s); err != nil || sample < 1 {
			return fmt.Errorf("-sample wants a positive number, got %q", s)
		}
	}
	only := 0
	if s := inv.Flags["only"]; s != "" {
		if only, err = strconv.Atoi(s); err != nil || only < 1 || len(days) != 1 {
			return fmt.Errorf("-only wants a mutant's number (see -list) and one day, got %q", s)
		}
	}
	var failed []string
	for _, d := range days {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := checkMutants(ctx, r, d, mutantRun{sample: sample, only: only, list: inv.Flag("list"), verbose: inv.Flag("v")}); err != nil {
			fmt.Printf("day%s mutants: FAILED: %v\n", d.Num, err)
			failed = append(failed, d.Dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("mutants check failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// mutantRun says which mutants of a day to run, and how.
type mutantRun struct {
	sample  int  // run this many, evenly spread; 0: all
	only    int  // run this one mutant and show its test output; 0: none
	list    bool // list the mutants instead of running them
	verbose bool // with only: run the tests with -test.v
}

// checkMutants builds one day's mutated reference, runs its tests against
// the chosen mutants and prints the kill rate and the survivors.
func checkMutants(ctx context.Context, r *core.Repo, d core.Day, how mutantRun) error {
	files, err := core.SolutionFiles(d)
	if err != nil {
		return err
	}
	// Mutant ids are per file, and the switch is one per package.
	if len(files) != 1 {
		return fmt.Errorf("%s: mutants need exactly one solution file, found %d", d.Dir, len(files))
	}
	file := files[0]
	tmp, err := os.MkdirTemp("", "kata-mutants-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	src, err := os.ReadFile(filepath.Join(d.SolutionDir(), file))
	if err != nil {
		return err
	}
	literals, err := literalTypes(ctx, r, d, file, src)
	if err != nil {
		return err
	}
	mutated, all, err := mutateSource(file, src, true, literals)
	if err != nil {
		return err
	}
	mutatedPath := filepath.Join(tmp, file)
	if err := os.WriteFile(mutatedPath, []byte(mutated), 0o644); err != nil {
		return err
	}
	replace := map[string]string{filepath.Join(d.Path, file): mutatedPath}
	switchPath := filepath.Join(tmp, "kata_mutant_switch.go")
	if err := os.WriteFile(switchPath, []byte(mutantSwitchFile), 0o644); err != nil {
		return err
	}
	replace[filepath.Join(d.Path, "kata_mutant_switch.go")] = switchPath

	equivalent, err := core.LoadEquivalentMutants(d)
	if err != nil {
		return err
	}
	counted, err := withoutEquivalents(all, equivalent)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(d.Dir, ".solution", "mutants.json"), err)
	}

	chosen := counted
	if how.sample > 0 && how.sample < len(counted) {
		// The sample leaves out the mutants that need the race detector:
		// they would cost a second build of the day, and the full run
		// checks them.
		plain := slices.DeleteFunc(slices.Clone(counted), needsRace)
		chosen = nil
		for i := range min(how.sample, len(plain)) {
			chosen = append(chosen, plain[i*len(plain)/min(how.sample, len(plain))])
		}
	}
	if how.list {
		for _, m := range all {
			mark := ""
			if !slices.ContainsFunc(chosen, func(c mutant) bool { return c.id == m.id }) {
				mark = "  [not run: equivalent or not sampled]"
			}
			fmt.Printf("%4d  %s:%d  %-20s  %s  (%s)%s\n", m.id, file, m.line, m.kind, m.desc, m.fn, mark)
		}
		return nil
	}

	overlay, remove, err := core.WriteTempOverlay(replace)
	if err != nil {
		return err
	}
	defer remove()
	// Without -race for most: they change what the code decides, not how
	// it synchronises, and the detector would make every run several times
	// slower.
	bin := filepath.Join(tmp, d.Dir+".test")
	if err := r.Run(ctx, core.RunOpts{Timeout: core.TestTimeout}, "go", "test", "-c", "-o", bin, "-overlay="+overlay, d.Pkg()); err != nil {
		return fmt.Errorf("building the mutated reference: %w", err)
	}
	// The mutants that change how code synchronises (a lock left out or
	// moved) only show under the race detector: they run in a second
	// binary built with -race.
	binFor := func(m mutant) string { return bin }
	if race := r.Race(ctx); len(race) > 0 && slices.ContainsFunc(chosen, needsRace) {
		raceBin := filepath.Join(tmp, d.Dir+".race.test")
		args := append(append([]string{"test", "-c"}, race...), "-o", raceBin, "-overlay="+overlay, d.Pkg())
		if err := r.Run(ctx, core.RunOpts{Timeout: core.TestTimeout}, "go", args...); err != nil {
			return fmt.Errorf("building the mutated reference with -race: %w", err)
		}
		binFor = func(m mutant) string {
			if needsRace(m) {
				return raceBin
			}
			return bin
		}
	}
	if how.only > 0 {
		i := slices.IndexFunc(all, func(m mutant) bool { return m.id == how.only })
		if i < 0 {
			return fmt.Errorf("no mutant %d: the day has %d", how.only, len(all))
		}
		m := all[i]
		fmt.Printf("mutant %d: %s:%d %s in %s (%s)\n", m.id, file, m.line, m.desc, m.fn, m.kind)
		res := runMutant(ctx, d, binFor(m), m.id, how.verbose)
		fmt.Print(res.output)
		if res.killed {
			fmt.Printf("mutant %d: killed by %s\n", m.id, res.killedBy)
		} else {
			fmt.Printf("mutant %d: survived: every test passed\n", m.id)
		}
		return nil
	}
	if res := runMutant(ctx, d, bin, 0, false); res.killed {
		fmt.Print(lastLines(res.output, 40))
		return fmt.Errorf("the reference, mutants compiled in but switched off, fails its tests: %s (its output's end is above)", res.killedBy)
	}

	fmt.Printf("day%s: %d mutants, %d of them equivalent (listed with reasons in .solution/mutants.json); running the tests against %d, %d at a time\n", d.Num, len(all), len(all)-len(counted), len(chosen), mutantWorkers)
	start := time.Now()
	results := make([]mutantResult, len(chosen))
	full := len(chosen) == len(counted)
	slots := make(chan struct{}, mutantWorkers)
	done := make(chan int)
	for i, m := range chosen {
		go func() {
			select {
			case slots <- struct{}{}:
				results[i] = runMutant(ctx, d, binFor(m), m.id, false)
				results[i].mutant = m
				// A full run holds a kill to the standard of a planted
				// mistake: killed on every one of antipatternRuns runs.
				for run := 2; full && results[i].killed && run <= mistakes.AntipatternRuns; run++ {
					if again := runMutant(ctx, d, binFor(m), m.id, false); !again.killed {
						results[i].killed = false
						results[i].unsteady = fmt.Sprintf("killed in %d of %d runs", run-1, run)
					}
				}
				<-slots
			case <-ctx.Done():
				results[i] = mutantResult{mutant: m, killedBy: "interrupted"}
			}
			done <- i
		}()
	}
	for range chosen {
		<-done
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	var survivors []mutantResult
	for _, res := range results {
		if !res.killed {
			survivors = append(survivors, res)
		}
	}
	killed := len(results) - len(survivors)
	rate := float64(killed) / float64(len(results))
	what := "every mutant that is not equivalent"
	if len(chosen) < len(counted) {
		what = fmt.Sprintf("a sample of %d of the %d mutants that are not equivalent, evenly spread over those that need no race detector (make mutants DAY=%s runs them all)", len(chosen), len(counted), d.Num)
	}
	if full {
		what += fmt.Sprintf(", a kill counted only when it held in %d runs of %d", mistakes.AntipatternRuns, mistakes.AntipatternRuns)
	}
	fmt.Printf("day%s mutants: %d of %d killed (%.1f%%) in %.0fs; checked %s\n", d.Num, killed, len(results), 100*rate, time.Since(start).Seconds(), what)
	for _, s := range survivors {
		verdict := "survived"
		if s.unsteady != "" {
			verdict = "unsteady (" + s.unsteady + ")"
		}
		fmt.Printf("  %s  %s:%d  %s  in %s (%s)\n", verdict, filepath.Join(d.Dir, ".solution", file), s.line, s.desc, s.fn, s.kind)
	}
	if len(survivors) > 0 {
		fmt.Printf("  to see one run: go run ./internal/kata mutants %s -only %d [-v]\n", d.Num, survivors[0].id)
	}
	weak := reportFamilies(results)
	if rate < minMutantKillRate {
		return fmt.Errorf("kill rate %.1f%% is below %.0f%%", 100*rate, 100*minMutantKillRate)
	}
	// A sample holds too few of a family to judge it; the full run does.
	if len(chosen) == len(counted) && len(weak) > 0 {
		return fmt.Errorf("the kill rate of %s is below %.0f%%", strings.Join(weak, ", "), 100*minMutantKillRate)
	}
	return nil
}

// reportFamilies prints the kill rate of each operator family and returns
// the families below minMutantKillRate.
func reportFamilies(results []mutantResult) (weak []string) {
	type tally struct{ killed, all int }
	byFamily := map[string]*tally{}
	var families []string
	for _, res := range results {
		f := mutantFamily(res.kind)
		if byFamily[f] == nil {
			byFamily[f] = &tally{}
			families = append(families, f)
		}
		byFamily[f].all++
		if res.killed {
			byFamily[f].killed++
		}
	}
	slices.Sort(families)
	for _, f := range families {
		t := byFamily[f]
		rate := float64(t.killed) / float64(t.all)
		fmt.Printf("  %-22s %4d of %4d killed (%.1f%%)\n", f, t.killed, t.all, 100*rate)
		if rate < minMutantKillRate {
			weak = append(weak, f)
		}
	}
	return weak
}

// failLine finds the first failing test in go test -v output.
var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// runMutant runs a day's compiled tests with one mutant switched on. The
// tests stop at the first failure.
func runMutant(ctx context.Context, d core.Day, bin string, id int, verbose bool) mutantResult {
	ctx, cancel := context.WithTimeout(ctx, mutantTestTimeout)
	defer cancel()
	args := []string{"-test.count=1", "-test.failfast", fmt.Sprintf("-test.timeout=%s", mutantTestTimeout-5*time.Second)}
	if verbose {
		args = append(args, "-test.v")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = d.Path
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", mutantSwitchEnv, id))
	core.OwnProcessGroup(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	res := mutantResult{elapsed: time.Since(start), output: out.String()}
	if ctx.Err() != nil {
		core.KillProcessGroup(cmd)
	}
	switch {
	case err == nil:
		return res
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.killed, res.killedBy = true, "timed out"
	default:
		res.killed = true
		if m := failLine.FindSubmatch(out.Bytes()); m != nil {
			res.killedBy = string(m[1])
		} else {
			res.killedBy = firstLine(strings.TrimSpace(lastLines(out.String(), 3)))
		}
	}
	return res
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// withoutEquivalents returns the mutants that the equivalent list does not
// name. Each entry must name exactly one mutant: one that matches none is
// stale, and one that matches several needs its occurrence.
func withoutEquivalents(all []mutant, equivalent []core.EquivalentMutant) ([]mutant, error) {
	skip := map[int]bool{}
	for _, e := range equivalent {
		var same []int
		for _, m := range all {
			if m.fn == e.Function && m.desc == e.Mutant {
				same = append(same, m.id)
			}
		}
		switch {
		case len(same) == 0:
			return nil, fmt.Errorf("%s in %s is listed as equivalent, but there is no such mutant: remove or update the entry", e.Mutant, e.Function)
		case e.Occurrence == 0 && len(same) > 1:
			return nil, fmt.Errorf("%s in %s reads the same as %d mutants: say which with \"occurrence\" (1 to %d, in source order)", e.Mutant, e.Function, len(same), len(same))
		case e.Occurrence < 0 || e.Occurrence > len(same):
			return nil, fmt.Errorf("%s in %s has occurrence %d, but there are %d such mutants", e.Mutant, e.Function, e.Occurrence, len(same))
		}
		skip[same[max(e.Occurrence, 1)-1]] = true
	}
	var counted []mutant
	for _, m := range all {
		if !skip[m.id] {
			counted = append(counted, m)
		}
	}
	return counted, nil
}
