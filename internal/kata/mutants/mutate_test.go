package mutants

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mutateSample has one site of each kind, a nested comparison, a closure
// and the returns the mutator must leave alone.
const mutateSample = `package main

import (
	"errors"
	"fmt"
	"os"
)

func check(n, limit int) error {
	if n > limit {
		return errors.New("too big")
	}
	if (n == 0) == (limit == 0) {
		return fmt.Errorf("both or neither zero")
	}
	return nil
}

func last(err error) error {
	if err != nil {
		return err
	} else {
		return errors.New("no error")
	}
}

func closure() func() error {
	return func() error {
		for i := 0; i < 1; i++ {
			return errors.New("loop")
		}
		return nil
	}
}

func main() {
	fmt.Println(check(3, 2), check(2, 2), check(0, 5), last(nil), closure()())
	os.Exit(0)
}
`

func TestMutateSourceFindsEverySite(t *testing.T) {
	mutated, mutants, err := mutateSource("main.go", []byte(mutateSample), false, nil)
	require.NoError(t, err)
	var got []string
	for _, m := range mutants {
		got = append(got, fmt.Sprintf("%d %s %s %s", m.line, m.fn, m.kind, m.desc))
	}
	assert.Equal(t, []string{
		"10 check boundary `n > limit` -> `n >= limit`",
		"10 check negation `n > limit` -> `n <= limit`",
		"13 check negation `(n == 0) == (limit == 0)` -> `(n == 0) != (limit == 0)`",
		"13 check negation `n == 0` -> `n != 0`",
		"13 check negation `limit == 0` -> `limit != 0`",
		"11 check error return removed `return errors.New(\"too big\")` removed",
		"14 check error return removed `return fmt.Errorf(\"both or neither zero\")` removed",
		"20 last negation `err != nil` -> `err == nil`",
		"29 closure boundary `i < 1` -> `i <= 1`",
		"29 closure negation `i < 1` -> `i >= 1`",
		"30 closure error return removed `return errors.New(\"loop\")` removed",
	}, got, "the returns in last are in terminating position, and `return nil` is no error")
	_, err = parser.ParseFile(token.NewFileSet(), "main.go", mutated, 0)
	require.NoError(t, err, "the mutated source does not parse:\n%s", mutated)
}

// buildMutated mutates src, builds it with the mutant switch and returns
// the program and its mutants.
func buildMutated(t *testing.T, src string, realistic bool) (bin string, mutants []mutant) {
	t.Helper()
	mutated, mutants, err := mutateSource("main.go", []byte(src), realistic, nil)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sample\n\ngo 1.26\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(mutated), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "switch.go"), []byte(mutantSwitchFile), 0o644))
	bin = filepath.Join(dir, "sample")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	out, err := build.CombinedOutput()
	require.NoError(t, err, "the mutated source does not build:\n%s\n%s", out, mutated)
	return bin, mutants
}

// TestMutatedSourceBehaves builds the mutated sample and runs it with each
// mutant switched on: the switch must change that one site and no other.
func TestMutatedSourceBehaves(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin, mutants := buildMutated(t, mutateSample, false)

	// The baseline, then each mutant in the order listed above.
	want := map[int]string{
		0:  "too big both or neither zero <nil> no error loop",
		1:  "too big too big <nil> no error loop",                           // n >= limit
		2:  "both or neither zero too big too big no error loop",            // n <= limit
		3:  "too big <nil> both or neither zero no error loop",              // != between the two
		4:  "too big <nil> both or neither zero no error loop",              // n != 0
		5:  "too big <nil> both or neither zero no error loop",              // limit != 0
		6:  "both or neither zero both or neither zero <nil> no error loop", // too big removed
		7:  "too big <nil> <nil> no error loop",                             // both or neither removed
		8:  "too big both or neither zero <nil> <nil> loop",                 // err == nil
		9:  "too big both or neither zero <nil> no error loop",              // i <= 1: equivalent here
		10: "too big both or neither zero <nil> no error <nil>",             // i >= 1
		11: "too big both or neither zero <nil> no error <nil>",             // loop return removed
	}
	require.Len(t, mutants, len(want)-1)
	for id := 0; id <= len(mutants); id++ {
		run := exec.Command(bin)
		run.Env = append(os.Environ(), fmt.Sprintf("%s=%d", mutantSwitchEnv, id))
		out, err := run.CombinedOutput()
		require.NoError(t, err, "mutant %d: %s", id, out)
		assert.Equal(t, want[id], strings.TrimSpace(string(out)), "mutant %d", id)
	}
}

func TestWithoutEquivalents(t *testing.T) {
	all := []mutant{
		{id: 1, fn: "f", desc: "`return err` removed"},
		{id: 2, fn: "f", desc: "`a > b` -> `a >= b`"},
		{id: 3, fn: "f", desc: "`return err` removed"},
		{id: 4, fn: "g", desc: "`return err` removed"},
	}
	ids := func(ms []mutant) []int {
		var out []int
		for _, m := range ms {
			out = append(out, m.id)
		}
		return out
	}

	counted, err := withoutEquivalents(all, []core.EquivalentMutant{
		{Function: "f", Mutant: "`a > b` -> `a >= b`", Reason: "r"},
		{Function: "f", Mutant: "`return err` removed", Occurrence: 2, Reason: "r"},
	})
	require.NoError(t, err)
	assert.Equal(t, []int{1, 4}, ids(counted), "the boundary mutant and the second `return err` of f are not counted")

	for _, tc := range []struct {
		name  string
		entry core.EquivalentMutant
		want  string
	}{
		{"Stale", core.EquivalentMutant{Function: "h", Mutant: "`return err` removed"}, "no such mutant"},
		{"Ambiguous", core.EquivalentMutant{Function: "f", Mutant: "`return err` removed"}, "occurrence"},
		{"Occurrence_past_the_end", core.EquivalentMutant{Function: "f", Mutant: "`return err` removed", Occurrence: 3}, "there are 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := withoutEquivalents(all, []core.EquivalentMutant{tc.entry})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// realisticSample has a site of each realistic operator.
const realisticSample = `package main

import (
	"context"
	"fmt"
	"sync"
)

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.TryLock() {
		fmt.Print("unlocked ")
	}
	c.n += d
}

func deadline(ctx context.Context) bool {
	_, ok := ctx.Deadline()
	return ok
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 1e9)
	defer cancel()
	c := &counter{}
	c.add(2)
	c.add(3)
	xs := []int{10, 20, 30}
	full := make(chan int, 1)
	full <- xs[0]
	go func() { <-full }()
	full <- xs[1]
	select {
	case full <- 7:
		fmt.Print("sent ")
	default:
		fmt.Print("full ")
	}
	var order []string
	order = append(order, "a")
	order = append(order, "b")
	if c.n > 4 && len(order) == 3 {
		fmt.Print("both ")
	}
	if len(xs) == 3 {
		fmt.Print("three ")
	}
	fmt.Println(c.n, <-full, order, deadline(ctx))
}
`

// TestRealisticMutantsBuildAndChangeBehaviour builds the realistic
// operators' mutants of a sample and runs each: the baseline is
// unchanged, and every operator's mutants change what the program does.
func TestRealisticMutantsBuildAndChangeBehaviour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin, mutants := buildMutated(t, realisticSample, true)

	run := func(id int) string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", mutantSwitchEnv, id))
		out, _ := cmd.CombinedOutput() // a mutant may crash: that changes behaviour too
		return strings.TrimSpace(string(out))
	}
	baseline := run(0)
	require.Equal(t, "full three 5 20 [a b] true", baseline, "the mutated sample with every mutant off")
	changedByKind := map[string]int{}
	for _, m := range mutants {
		if run(m.id) != baseline {
			changedByKind[m.kind]++
		}
	}
	for _, kind := range []string{kindStatement, kindSwap, kindBackground, kindLock, kindNonBlocking, kindBlocking, kindLogic, kindConditionTrue, kindConditionFalse, kindOffByOne} {
		assert.Positive(t, changedByKind[kind], "mutants of kind %q that change the sample's output", kind)
	}
}

func TestLiteralTypes(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "day01_sample")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, ".solution"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module sample\n\ngo 1.26\n"), 0o644))
	ref := `package main

import (
	"fmt"
	tm "time"
)

type level int32

const limit = 3

func wait(d tm.Duration) {}

func main() {
	var buf [4]byte
	n := 64
	wait(2 * tm.Second)
	var l level = 5
	x := int64(1) << 20
	f := 0.5
	fmt.Println(buf, n, l, x, f, limit)
}
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".solution", "main.go"), []byte(ref), 0o644))
	r := &core.Repo{Root: root}
	got, err := literalTypes(t.Context(), r, core.Day{Dir: "day01_sample", Path: dir, Num: "01"}, "main.go", []byte(ref))
	require.NoError(t, err)
	byText := map[string]string{}
	for off, typ := range got {
		end := off
		for end < len(ref) && strings.ContainsRune("0123456789.", rune(ref[end])) {
			end++
		}
		byText[ref[off:end]] = typ
	}
	// The array length and the constant shift's count stay untyped
	// constants, left out; each other literal takes the type it is used
	// as, spelled with the file's import name.
	require.Equal(t, map[string]string{"64": "int", "2": "tm.Duration", "5": "level", "1": "int64", "0.5": "float64"}, byText)
}
