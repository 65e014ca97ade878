package mutants

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// A numeric literal one more or one less (a limit of 64 written 65, a
// buffer of 1 written 0) needs the literal's type: the mutated value is
// chosen at run time, so it cannot stay an untyped constant, and must be
// converted to the type the constant takes where it is used. literalTypes
// asks go/types for it.

// literalTypes type-checks the day's package with src, the reference, in
// place of file, and returns the type each numeric literal in a function
// body takes, by the literal's byte offset in src, spelled as src can spell
// it (time.Duration, int64, a type of the package). A literal that stays
// an untyped constant (an array length, a constant declaration) is left
// out, and so is one whose type src cannot name.
func literalTypes(ctx context.Context, r *core.Repo, d core.Day, file string, src []byte) (map[int]string, error) {
	overlay, remove, err := core.WriteTempOverlay(map[string]string{filepath.Join(d.Path, file): filepath.Join(d.SolutionDir(), file)})
	if err != nil {
		return nil, err
	}
	defer remove()
	// The export data of every dependency, as the build cache holds it.
	var list bytes.Buffer
	if err := r.Run(ctx, core.RunOpts{Timeout: core.TestTimeout, Stdout: &list, Quiet: true}, "go", "list", "-export", "-deps",
		"-overlay="+overlay, "-f", "{{if .Export}}{{.ImportPath}}\t{{.Export}}{{end}}", d.Pkg()); err != nil {
		return nil, fmt.Errorf("listing the export data of %s: %w", d.Dir, err)
	}
	exports := map[string]string{}
	for line := range strings.Lines(list.String()) {
		if path, export, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok {
			exports[path] = export
		}
	}

	fset := token.NewFileSet()
	var files []*ast.File
	var target *ast.File
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if ok, err := build.Default.MatchFile(d.Path, name); err != nil || !ok {
			continue
		}
		content := src
		if name != file {
			if content, err = os.ReadFile(filepath.Join(d.Path, name)); err != nil {
				return nil, err
			}
		}
		f, err := parser.ParseFile(fset, name, content, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		if name == file {
			target = f
		}
	}
	if target == nil {
		return nil, fmt.Errorf("%s: %s is not among the package's files", d.Dir, file)
	}

	lookup := func(path string) (io.ReadCloser, error) {
		for _, p := range []string{path, "vendor/" + path} {
			if export, ok := exports[p]; ok {
				return os.Open(export)
			}
		}
		return nil, fmt.Errorf("no export data for %q", path)
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Implicits: map[ast.Node]types.Object{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "gc", lookup)}
	pkg, err := conf.Check(d.Dir, fset, files, info)
	if err != nil {
		return nil, fmt.Errorf("type-checking %s: %w", d.Dir, err)
	}
	return literalTypesIn(fset, target, pkg, info), nil
}

// literalTypesIn is literalTypes on a type-checked file.
func literalTypesIn(fset *token.FileSet, f *ast.File, pkg *types.Package, info *types.Info) map[int]string {
	imported := map[string]string{} // package path -> the name f uses for it
	for _, spec := range f.Imports {
		path, _ := strconv.Unquote(spec.Path.Value)
		if spec.Name != nil {
			imported[path] = spec.Name.Name
		} else if obj, ok := info.Implicits[spec].(*types.PkgName); ok {
			imported[path] = obj.Imported().Name()
		}
	}
	tf := fset.File(f.Pos())
	out := map[int]string{}
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ArrayType:
				return false // an array's length must stay constant
			case *ast.BasicLit:
				if n.Kind != token.INT && n.Kind != token.FLOAT {
					return false
				}
				t := info.Types[n].Type
				basic, ok := t.Underlying().(*types.Basic)
				if !ok || basic.Info()&types.IsUntyped != 0 || basic.Info()&(types.IsInteger|types.IsFloat) == 0 {
					return false
				}
				nameable := true
				name := types.TypeString(t, func(p *types.Package) string {
					if p == pkg {
						return ""
					}
					local, ok := imported[p.Path()]
					nameable = nameable && ok
					return local
				})
				if nameable {
					out[tf.Offset(n.Pos())] = name
				}
			}
			return true
		})
	}
	return out
}

// literal adds the mutants that make a numeric literal one more and one
// less, in the type it takes where it is used. The buffer of a channel
// that is sent to once gains nothing from one more slot: that mutant is
// left out, as its send made non-blocking is.
func (rm *realisticMutator) literal(lit *ast.BasicLit) {
	typ, ok := rm.literals[rm.off(lit.Pos())]
	if !ok {
		return
	}
	up := -1 // no mutant has this id
	if !rm.roomySizes[lit] {
		up = rm.add(lit, rm.fn, kindLiteral, fmt.Sprintf("`%s` -> `%s+1`", lit.Value, lit.Value))
	}
	down := rm.add(lit, rm.fn, kindLiteral, fmt.Sprintf("`%s` -> `%s-1`", lit.Value, lit.Value))
	rm.wrap(lit, func(inner string) string { return fmt.Sprintf("kataOff(%d, %d, %s(%s))", up, down, typ, inner) })
}
