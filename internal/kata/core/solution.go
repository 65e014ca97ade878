package core

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A task's functions are listed in kata.json ("functions"); the stubs
// check proves that the untouched main.go carries "TODO(task N)" in
// exactly those. Their reference is the functions of .solution/main.go
// with the same names, shown with the helpers the reference adds that they
// use (functions of .solution/main.go that are no task's). The file is
// read with go/ast, so what is shown is always the code the check runs.

// todoTask matches the marker a stub's body carries: "TODO(task 2)".
var todoTask = regexp.MustCompile(`TODO\(task (\d+)\)`)

// funcKey names a top-level function: "validateFileName", or a method
// as "FileUploadServer.UploadFile".
func funcKey(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if star, ok := t.(*ast.StarExpr); ok {
		t = star.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

// stubTasks maps each task to the functions of the stub file src whose
// bodies carry its TODO marker, in file order.
func stubTasks(src []byte) (map[int][]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "main.go", src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	tasks := map[int][]string{}
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		for _, group := range f.Comments {
			if group.Pos() < fd.Body.Lbrace || group.End() > fd.Body.Rbrace {
				continue
			}
			for _, m := range todoTask.FindAllStringSubmatch(group.Text(), -1) {
				id, _ := strconv.Atoi(m[1])
				if !slices.Contains(tasks[id], funcKey(fd)) {
					tasks[id] = append(tasks[id], funcKey(fd))
				}
			}
		}
	}
	return tasks, nil
}

// referenceCode returns the source of the reference functions named by
// keys, from solution, each with its doc comment, followed by the
// helpers they use that the stub file does not declare; stub lists the
// stub's function keys.
func referenceCode(solution []byte, keys []string, stub map[string]bool) (string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "main.go", solution, parser.ParseComments)
	if err != nil {
		return "", err
	}
	decls := map[string]*ast.FuncDecl{}
	var order []string
	byName := map[string][]string{} // function or method name -> keys
	for _, decl := range f.Decls {
		if fd, ok := decl.(*ast.FuncDecl); ok {
			k := funcKey(fd)
			decls[k] = fd
			order = append(order, k)
			byName[fd.Name.Name] = append(byName[fd.Name.Name], k)
		}
	}
	shown := map[string]bool{}
	var queue []string
	for _, k := range keys {
		if decls[k] == nil {
			return "", fmt.Errorf("the reference has no %s", k)
		}
		shown[k] = true
		queue = append(queue, k)
	}
	// The helpers: what the shown functions mention by name that only the
	// reference declares, and what those mention in turn.
	for len(queue) > 0 {
		fd := decls[queue[0]]
		queue = queue[1:]
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			id, ok := n.(*ast.Ident)
			if !ok {
				return true
			}
			for _, k := range byName[id.Name] {
				if !shown[k] && !stub[k] {
					shown[k] = true
					queue = append(queue, k)
				}
			}
			return true
		})
	}
	var b strings.Builder
	for _, k := range order {
		if !shown[k] {
			continue
		}
		fd := decls[k]
		start := fd.Pos()
		if fd.Doc != nil {
			start = fd.Doc.Pos()
		}
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.Write(solution[fset.Position(start).Offset:fset.Position(fd.End()).Offset])
		b.WriteString("\n")
	}
	return b.String(), nil
}

// TaskReference returns the reference code of task t of day d.
func TaskReference(d Day, t Task) (string, error) {
	solution, err := os.ReadFile(filepath.Join(d.SolutionDir(), "main.go"))
	if err != nil {
		return "", err
	}
	taskFuncs := map[string]bool{}
	for _, other := range d.Kata.Tasks {
		for _, k := range other.Functions {
			taskFuncs[k] = true
		}
	}
	return referenceCode(solution, t.Functions, taskFuncs)
}

// CheckTaskFunctions checks kata.json's task functions against the
// untouched stub file and the reference: each task's functions are
// exactly those whose stub bodies carry its TODO marker, and the
// reference declares each one.
func CheckTaskFunctions(d Day) []string {
	stubSrc, err := os.ReadFile(filepath.Join(d.Path, "main.go"))
	if err != nil {
		return []string{err.Error()}
	}
	solution, err := os.ReadFile(filepath.Join(d.SolutionDir(), "main.go"))
	if err != nil {
		return []string{err.Error()}
	}
	marked, err := stubTasks(stubSrc)
	if err != nil {
		return []string{fmt.Sprintf("%s/main.go: %v", d.Dir, err)}
	}
	var problems []string
	for _, t := range d.Kata.Tasks {
		if !slices.Equal(t.Functions, marked[t.ID]) {
			problems = append(problems, fmt.Sprintf("task %d lists functions %q in kata.json, but the stubs carrying TODO(task %d) are %q", t.ID, t.Functions, t.ID, marked[t.ID]))
			continue
		}
		if _, err := referenceCode(solution, t.Functions, nil); err != nil {
			problems = append(problems, fmt.Sprintf("task %d: %v", t.ID, err))
		}
	}
	return problems
}
