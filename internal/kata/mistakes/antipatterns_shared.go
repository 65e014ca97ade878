package mistakes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// A day's planted mistakes used to cost a build each: over a hundred
// links of a test binary with the race detector, most of make check. Most
// mistakes change only the bodies of a few functions, so they can share
// one build, as the mutants do: each changed function is compiled in as a
// variant of its own, and the original calls it when kataMistake selects
// that mistake. A mistake that changes anything else (a type, an import,
// a function's signature) keeps a build of its own.

// mistakeSwitchEnv selects one planted mistake of a shared build.
const mistakeSwitchEnv = "KATA_MISTAKE"

// mistakeSwitchFile is added to the package beside the shared copy.
const mistakeSwitchFile = `package main

import (
	"os"
	"strconv"
)

// kataMistake selects one planted mistake of the shared build (0: none).
var kataMistake, _ = strconv.Atoi(os.Getenv("` + mistakeSwitchEnv + `"))
`

// sharedMistakes is a day's shared build: which mistakes it holds, by
// name, with their switch values.
type sharedMistakes struct {
	bin string
	ids map[string]int
}

// plantShared returns src, the reference file name, with every mistake of
// list that edits only function bodies of name compiled in behind
// kataMistake, and the switch value of each mistake it took.
func plantShared(name, src string, list []core.Antipattern) (string, map[string]int) {
	fset := token.NewFileSet()
	orig, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution|parser.ParseComments)
	if err != nil {
		return src, nil
	}
	offset := func(f *token.FileSet, p token.Pos) int { return f.Position(p).Offset }
	origDecls := declTexts(fset, orig, src)

	inserts := map[int][]string{} // offset in src -> prologues to insert
	var variants []string
	ids := map[string]int{}
	for _, ap := range list {
		if ap.File != name {
			continue
		}
		planted, err := core.ApplyEdits(src, ap.Edits)
		if err != nil {
			continue // its own build reports the problem
		}
		pset := token.NewFileSet()
		pf, err := parser.ParseFile(pset, name, planted, parser.SkipObjectResolution|parser.ParseComments)
		if err != nil {
			continue
		}
		changed, ok := changedFuncs(origDecls, declTexts(pset, pf, planted))
		if !ok || len(changed) == 0 {
			continue
		}
		id := len(ids) + 1
		var prologues map[int]string
		var vs []string
		for _, i := range changed {
			fd := orig.Decls[i].(*ast.FuncDecl)
			call, ok := variantCall(fd, id)
			if !ok {
				prologues = nil
				break
			}
			if prologues == nil {
				prologues = map[int]string{}
			}
			prologues[offset(fset, fd.Body.Lbrace)+1] = fmt.Sprintf("\n\tif kataMistake == %d {\n\t\t%s\n\t}", id, call)
			pfd := pf.Decls[i].(*ast.FuncDecl)
			start, nameAt, end := offset(pset, pfd.Pos()), offset(pset, pfd.Name.Pos()), offset(pset, pfd.End())
			vs = append(vs, fmt.Sprintf("// %s with the planted mistake %s.\n%s%s%s", pfd.Name.Name, ap.Name,
				planted[start:nameAt], variantName(pfd.Name.Name, id), planted[nameAt+len(pfd.Name.Name):end]))
		}
		if prologues == nil {
			continue
		}
		ids[ap.Name] = id
		for at, p := range prologues {
			inserts[at] = append(inserts[at], p)
		}
		variants = append(variants, vs...)
	}
	if len(ids) == 0 {
		return src, nil
	}
	var out strings.Builder
	last := 0
	for _, at := range slices.Sorted(maps.Keys(inserts)) {
		out.WriteString(src[last:at])
		out.WriteString(strings.Join(inserts[at], ""))
		last = at
	}
	out.WriteString(src[last:])
	for _, v := range variants {
		out.WriteString("\n\n" + v + "\n")
	}
	return out.String(), ids
}

// decl is a top-level declaration's source text; for a function with a
// body, head is the text before the body.
type decl struct{ text, head string }

// declTexts returns the top-level declarations of f.
func declTexts(fset *token.FileSet, f *ast.File, src string) []decl {
	decls := make([]decl, len(f.Decls))
	for i, d := range f.Decls {
		start := fset.Position(d.Pos()).Offset
		decls[i].text = src[start:fset.Position(d.End()).Offset]
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
			decls[i].head = src[start:fset.Position(fd.Body.Lbrace).Offset]
		}
	}
	return decls
}

// changedFuncs returns the indexes of the declarations that differ,
// when only function bodies do: the same declarations in the same order,
// each changed one a function with the same signature.
func changedFuncs(orig, planted []decl) ([]int, bool) {
	if len(orig) != len(planted) {
		return nil, false
	}
	var changed []int
	for i := range orig {
		if orig[i].text == planted[i].text {
			continue
		}
		if orig[i].head == "" || orig[i].head != planted[i].head {
			return nil, false
		}
		changed = append(changed, i)
	}
	return changed, true
}

func variantName(name string, id int) string { return fmt.Sprintf("%s__kataMistake%d", name, id) }

// variantCall is the statement by which fd hands its call to its variant
// for mistake id, or false when fd cannot (a parameter or receiver
// without a name, type parameters).
func variantCall(fd *ast.FuncDecl, id int) (string, bool) {
	if fd.Type.TypeParams != nil {
		return "", false
	}
	var args []string
	for _, field := range fd.Type.Params.List {
		if len(field.Names) == 0 {
			return "", false
		}
		for _, n := range field.Names {
			if n.Name == "_" {
				return "", false
			}
			arg := n.Name
			if _, ok := field.Type.(*ast.Ellipsis); ok {
				arg += "..."
			}
			args = append(args, arg)
		}
	}
	call := variantName(fd.Name.Name, id) + "(" + strings.Join(args, ", ") + ")"
	if fd.Recv != nil {
		recv := fd.Recv.List[0]
		if len(recv.Names) == 0 || recv.Names[0].Name == "_" {
			return "", false
		}
		if _, generic := recv.Type.(*ast.IndexExpr); generic {
			return "", false
		}
		call = recv.Names[0].Name + "." + call
	}
	if fd.Type.Results == nil || len(fd.Type.Results.List) == 0 {
		return call + "\n\t\treturn", true
	}
	return "return " + call, true
}

// buildSharedMistakes builds d's test binary, with -race when the machine
// has it, holding every planted mistake of list that can share a build,
// in a folder that remove deletes. It returns nil when fewer than two can
// or the build fails (and says why): each mistake then gets a build of
// its own.
func buildSharedMistakes(ctx context.Context, r *core.Repo, d core.Day, list []core.Antipattern) (s *sharedMistakes, remove func()) {
	s, remove = buildShared(ctx, r, d, list)
	if s == nil {
		remove()
		return nil, func() {}
	}
	return s, remove
}

func buildShared(ctx context.Context, r *core.Repo, d core.Day, list []core.Antipattern) (*sharedMistakes, func()) {
	none := func() {}
	files, err := core.SolutionFiles(d)
	if err != nil || len(files) != 1 {
		return nil, none
	}
	file := files[0]
	src, err := os.ReadFile(filepath.Join(d.SolutionDir(), file))
	if err != nil {
		return nil, none
	}
	shared, ids := plantShared(file, string(src), list)
	if len(ids) < 2 {
		return nil, none
	}
	tmp, err := os.MkdirTemp("", "kata-mistakes-*")
	if err != nil {
		return nil, none
	}
	cleanup := func() { os.RemoveAll(tmp) }
	sharedPath, switchPath := filepath.Join(tmp, file), filepath.Join(tmp, "kata_mistake_switch.go")
	if os.WriteFile(sharedPath, []byte(shared), 0o644) != nil || os.WriteFile(switchPath, []byte(mistakeSwitchFile), 0o644) != nil {
		return nil, cleanup
	}
	replace := map[string]string{filepath.Join(d.Path, file): sharedPath, filepath.Join(d.Path, "kata_mistake_switch.go"): switchPath}
	overlay, remove, err := core.WriteTempOverlay(replace)
	if err != nil {
		return nil, cleanup
	}
	defer remove()
	bin := filepath.Join(tmp, d.Dir+".test")
	args := append(append([]string{"test", "-c"}, r.Race(ctx)...), "-o", bin, "-overlay="+overlay, d.Pkg())
	var out bytes.Buffer
	if err := r.Run(ctx, core.RunOpts{Timeout: core.TestTimeout, Stdout: &out, Stderr: &out}, "go", args...); err != nil {
		fmt.Printf("day%s: the shared build of %d planted mistakes failed, so each gets a build of its own:\n%s\n", d.Num, len(ids), core.Indent(strings.TrimSpace(out.String()), "    "))
		return nil, cleanup
	}
	if rest := len(list) - len(ids); rest > 0 {
		fmt.Printf("day%s: %d of %d planted mistakes share one build; %d change more than function bodies and get a build each\n", d.Num, len(ids), len(list), rest)
	} else {
		fmt.Printf("day%s: all %d planted mistakes share one build\n", d.Num, len(ids))
	}
	return &sharedMistakes{bin: bin, ids: ids}, cleanup
}

// runShared runs the tests of ap in the shared build, with ap switched on,
// as go test -json would report them.
func runShared(ctx context.Context, r *core.Repo, d core.Day, s *sharedMistakes, ap core.Antipattern) (*core.TestRun, error) {
	processes, count := runs(ap)
	var run *core.TestRun
	for range processes {
		ctx, cancel := context.WithTimeout(ctx, core.TestTimeout)
		cmd := exec.CommandContext(ctx, "go", "tool", "test2json", "-t", "-p", d.Dir, s.bin,
			"-test.v=test2json", fmt.Sprintf("-test.count=%d", count), "-test.timeout=300s", "-test.run", runPattern(ap.CaughtBy))
		cmd.Dir = d.Path // as go test runs a test binary: in its package's folder
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", mistakeSwitchEnv, s.ids[ap.Name]))
		core.OwnProcessGroup(cmd)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		one, perr := core.ParseTestJSON(&stdout)
		if perr != nil {
			return nil, fmt.Errorf("reading the test output: %w", perr)
		}
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return nil, core.WithStderr(err, stderr.String())
		}
		run = run.Merge(one)
	}
	return run, nil
}
