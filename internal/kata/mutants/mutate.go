package mutants

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
)

// A mutant is one small, systematic change to a reference solution: a
// comparison moved across its boundary or negated, or an early return of
// an error removed. A good test suite fails on each; one that still passes
// is a survivor, a behaviour the tests do not pin down.
//
// Every mutant of a file is compiled into one copy of it (mutant
// schemata): each site reads a switch, kataMutantID, set from the
// environment when the test binary starts, and behaves as the reference
// unless its own id is the chosen one. The day is then compiled once and
// its test binary run once per mutant, instead of compiling every mutant.
type mutant struct {
	id   int
	line int
	kind string // one of the kind constants in mutate_realistic.go
	desc string // what changed, as source: `n > max` -> `n >= max`
	fn   string // the function it is in
}

// mutantSwitchEnv names the environment variable that selects a mutant.
const mutantSwitchEnv = "KATA_MUTANT"

// mutantSwitchFile is the Go file added to the package beside the
// mutated copy: it reads the switch once, before any test runs.
const mutantSwitchFile = `package main

import (
	"context"
	"os"
	"strconv"
)

// kataMutantID selects one mutant of the mutated reference (0: none).
var kataMutantID, _ = strconv.Atoi(os.Getenv("` + mutantSwitchEnv + `"))
` + mutantHelpers

// boundary and negation give a comparison's mutated operators.
var (
	boundary = map[token.Token]token.Token{token.LSS: token.LEQ, token.LEQ: token.LSS, token.GTR: token.GEQ, token.GEQ: token.GTR}
	negation = map[token.Token]token.Token{token.LSS: token.GEQ, token.LEQ: token.GTR, token.GTR: token.LEQ, token.GEQ: token.LSS, token.EQL: token.NEQ, token.NEQ: token.EQL}
)

// site is a place in the source that one or more mutants change.
type site struct {
	start, end int // byte offsets of the node
	// wrapper says that render puts code around the site's whole text
	// rather than rebuilding it from its children's; of two sites on the
	// same node, the wrapper goes outside.
	wrapper bool
	// render builds the site's replacement from the text of its
	// children, which may hold sites of their own.
	render func(text func(start, end int) string) string
}

// mutateSource returns src with every mutant compiled in behind the
// kataMutantID switch, and the mutants: the classic operators' in source
// order, then, with realistic, the realistic operators' (see
// mutate_realistic.go). literals holds the types of the numeric literals
// that are made one more and one less (see literalTypes); nil means none.
func mutateSource(filename string, src []byte, realistic bool, literals map[int]string) (string, []mutant, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, filename, src, parser.SkipObjectResolution)
	if err != nil {
		return "", nil, err
	}
	tf := fset.File(file.Pos())
	off := func(p token.Pos) int { return tf.Offset(p) }
	raw := func(n ast.Node) string { return string(src[off(n.Pos()):off(n.End())]) }

	var (
		sites   []site
		mutants []mutant
	)
	add := func(n ast.Node, fn, kind, desc string) int {
		m := mutant{id: len(mutants) + 1, line: fset.Position(n.Pos()).Line, kind: kind, desc: desc, fn: fn}
		mutants = append(mutants, m)
		return m.id
	}

	for _, decl := range file.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		name := funcName(fd)
		returnsError := func(ft *ast.FuncType) bool {
			if ft.Results == nil || len(ft.Results.List) == 0 {
				return false
			}
			last, ok := ft.Results.List[len(ft.Results.List)-1].Type.(*ast.Ident)
			return ok && last.Name == "error"
		}

		// Comparisons, anywhere in the function.
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			be, ok := n.(*ast.BinaryExpr)
			if !ok {
				return true
			}
			if _, ok := negation[be.Op]; !ok {
				return true
			}
			x, y, op := be.X, be.Y, be.Op
			type alt struct {
				id int
				op token.Token
			}
			var alts []alt
			if b, ok := boundary[op]; ok {
				alts = append(alts, alt{add(be, name, kindBoundary, fmt.Sprintf("`%s` -> `%s %s %s`", raw(be), raw(x), b, raw(y))), b})
			}
			neg := negation[op]
			alts = append(alts, alt{add(be, name, kindNegation, fmt.Sprintf("`%s` -> `%s %s %s`", raw(be), raw(x), neg, raw(y))), neg})
			sites = append(sites, site{start: off(be.Pos()), end: off(be.End()), render: func(text func(int, int) string) string {
				xs, ys := text(off(x.Pos()), off(x.End())), text(off(y.Pos()), off(y.End()))
				var b strings.Builder
				b.WriteString("(")
				var ids []string
				for _, a := range alts {
					fmt.Fprintf(&b, "kataMutantID == %d && (%s) %s (%s) || ", a.id, xs, a.op, ys)
					ids = append(ids, fmt.Sprintf("kataMutantID != %d", a.id))
				}
				fmt.Fprintf(&b, "%s && (%s) %s (%s))", strings.Join(ids, " && "), xs, op, ys)
				return b.String()
			}})
			return true
		})

		// Early returns of an error, in the function and in its
		// closures, each judged against its own result list.
		var walkFunc func(ft *ast.FuncType, body *ast.BlockStmt)
		walkFunc = func(ft *ast.FuncType, body *ast.BlockStmt) {
			errFunc := returnsError(ft)
			var stmts func(list []ast.Stmt, terminal bool)
			var stmt func(s ast.Stmt, terminal bool)
			stmts = func(list []ast.Stmt, terminal bool) {
				for i, s := range list {
					stmt(s, terminal && i == len(list)-1)
				}
			}
			// Every clause of a terminating switch or select ends the
			// function, not only the last one.
			clauses := func(body *ast.BlockStmt, terminal bool) {
				for _, c := range body.List {
					stmt(c, terminal)
				}
			}
			stmt = func(s ast.Stmt, terminal bool) {
				// Closures inside the statement are functions of their own.
				ast.Inspect(s, func(n ast.Node) bool {
					switch n := n.(type) {
					case *ast.FuncLit:
						walkFunc(n.Type, n.Body)
						return false
					case ast.Stmt:
						return n == s || !isCompound(n)
					}
					return true
				})
				switch s := s.(type) {
				case *ast.ReturnStmt:
					// A return in terminating position cannot go: the
					// function would then lack one. It is not early anyway.
					if !errFunc || terminal || len(s.Results) == 0 {
						return
					}
					last := s.Results[len(s.Results)-1]
					if id, ok := last.(*ast.Ident); ok && id.Name == "nil" {
						return
					}
					n := add(s, name, kindErrorReturn, fmt.Sprintf("`%s` removed", firstLine(raw(s))))
					sites = append(sites, site{start: off(s.Pos()), end: off(s.End()), render: func(text func(int, int) string) string {
						return fmt.Sprintf("if kataMutantID != %d { %s }", n, text(off(s.Pos()), off(s.End())))
					}})
				case *ast.BlockStmt:
					stmts(s.List, terminal)
				case *ast.LabeledStmt:
					stmt(s.Stmt, terminal)
				case *ast.IfStmt:
					stmts(s.Body.List, terminal)
					if s.Else != nil {
						stmt(s.Else, terminal)
					}
				case *ast.SwitchStmt:
					clauses(s.Body, terminal)
				case *ast.TypeSwitchStmt:
					clauses(s.Body, terminal)
				case *ast.SelectStmt:
					clauses(s.Body, terminal)
				case *ast.CaseClause:
					stmts(s.Body, terminal)
				case *ast.CommClause:
					stmts(s.Body, terminal)
				case *ast.ForStmt:
					stmts(s.Body.List, false)
				case *ast.RangeStmt:
					stmts(s.Body.List, false)
				}
			}
			stmts(body.List, true)
		}
		walkFunc(fd.Type, fd.Body)
	}
	if realistic {
		for _, decl := range file.Decls {
			if fd, ok := decl.(*ast.FuncDecl); ok && fd.Body != nil {
				rm := &realisticMutator{fn: funcName(fd), off: off, raw: raw, add: add, sites: &sites, literals: literals}
				rm.mutate(fd.Body)
			}
		}
	}

	slices.SortStableFunc(sites, func(a, b site) int {
		switch {
		case a.start != b.start:
			return a.start - b.start
		case a.end != b.end:
			return b.end - a.end // the outer site first
		case a.wrapper != b.wrapper:
			if a.wrapper {
				return -1
			}
			return 1
		}
		return 0
	})
	// text renders src[start:end] with every site inside it replaced,
	// looking at sites[from:] only. Sorted outer first, a site's inner
	// sites come after it, so a site renders its inside from the next
	// index on, and never itself.
	var text func(start, end, from int) string
	text = func(start, end, from int) string {
		var b strings.Builder
		pos := start
		for i := from; i < len(sites); i++ {
			s := sites[i]
			if s.start < pos || s.end > end {
				continue // inside a site already rendered, or past the range
			}
			b.Write(src[pos:s.start])
			b.WriteString(s.render(func(start, end int) string { return text(start, end, i+1) }))
			pos = s.end
		}
		b.Write(src[pos:end])
		return b.String()
	}
	return text(0, len(src), 0), mutants, nil
}

// isCompound reports whether a statement holds statements of its own,
// which the return walk visits itself.
func isCompound(s ast.Stmt) bool {
	switch s.(type) {
	case *ast.BlockStmt, *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt, *ast.SwitchStmt,
		*ast.TypeSwitchStmt, *ast.SelectStmt, *ast.CaseClause, *ast.CommClause, *ast.LabeledStmt:
		return true
	}
	return false
}

// funcName names a function as the reports do: F, or T.M for a method.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv != nil && len(fd.Recv.List) == 1 {
		return receiverName(fd.Recv.List[0].Type) + "." + fd.Name.Name
	}
	return fd.Name.Name
}

// receiverName is the type name of a method's receiver: T for *T and T[K].
func receiverName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return receiverName(e.X)
	case *ast.IndexExpr:
		return receiverName(e.X)
	case *ast.IndexListExpr:
		return receiverName(e.X)
	case *ast.Ident:
		return e.Name
	}
	return "?"
}

func firstLine(s string) string {
	first, _, more := strings.Cut(s, "\n")
	if more {
		return first + " ..."
	}
	return first
}
