package mistakes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"

	"github.com/stretchr/testify/require"
)

const sharedSample = `package main

import "fmt"

type counter struct{ n int }

func (c *counter) add(xs ...int) {
	for _, x := range xs {
		c.n += x
	}
}

func half(n int) (int, bool) {
	return n / 2, n%2 == 0
}

func skip(_ int) int { return 1 }

func size(m map[string]struct{}) int { return len(m) }

func main() {
	c := &counter{}
	c.add(1, 2, 3)
	h, even := half(c.n)
	fmt.Println(c.n, h, even, skip(0), size(nil))
}
`

// TestPlantShared builds the sample with its mistakes shared and checks
// that each, switched on, behaves as the sample with it planted alone;
// a mistake that changes more than function bodies is left out.
func TestPlantShared(t *testing.T) {
	list := []core.Antipattern{
		{Name: "adds_twice", File: "main.go", Edits: []core.Edit{{Find: "c.n += x", Replace: "c.n += 2 * x"}}},
		{Name: "odd_halves", File: "main.go", Edits: []core.Edit{{Find: "n / 2, n%2 == 0", Replace: "n / 3, n%2 == 1"}, {Find: "c.add(1, 2, 3)", Replace: "c.add(1, 2)"}}},
		{Name: "new_field", File: "main.go", Edits: []core.Edit{{Find: "struct{ n int }", Replace: "struct{ n, m int }"}}},
		{Name: "new_signature", File: "main.go", Edits: []core.Edit{{Find: "func half(n int) (int, bool) {", Replace: "func half(n int64) (int, bool) {"}}},
		{Name: "unnamed_parameter", File: "main.go", Edits: []core.Edit{{Find: "return 1 }", Replace: "return 2 }"}}},
		{Name: "result_after_a_brace", File: "main.go", Edits: []core.Edit{{Find: "struct{}) int { return len(m) }", Replace: "struct{}) int64 { return int64(len(m)) }"}}},
	}
	shared, ids := plantShared("main.go", sharedSample, list)
	require.Equal(t, map[string]int{"adds_twice": 1, "odd_halves": 2}, ids, "the mistakes that share the build")

	run := func(src string, env ...string) string {
		t.Helper()
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sample\n\ngo 1.26\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "switch.go"), []byte(mistakeSwitchFile), 0o644))
		cmd := exec.Command("go", "run", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s\n%s", out, src)
		return string(out)
	}
	require.Equal(t, run(sharedSample), run(shared), "the shared build with no mistake switched on")
	for name, id := range ids {
		var ap core.Antipattern
		for _, a := range list {
			if a.Name == name {
				ap = a
			}
		}
		alone, err := core.ApplyEdits(sharedSample, ap.Edits)
		require.NoError(t, err)
		require.Equal(t, run(alone), run(shared, mistakeSwitchEnv+"="+strconv.Itoa(id)), "the shared build with %s switched on", name)
	}
}
