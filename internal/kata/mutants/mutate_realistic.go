package mutants

import (
	"fmt"
	"go/ast"
	"go/token"
	"regexp"
	"strings"
)

// The operators below model mistakes people make, rather than flipped
// comparisons: a statement forgotten or written one line too early, a
// context that outlives the call, a lock left out, a send that blocks or
// one that silently drops, a condition inverted in its logic or decided
// in advance, an index or a limit off by one. Each still compiles into
// the one mutated copy of the file, behind the kataMutantID switch.

// Mutant kinds, grouped into the families the report gives a kill rate
// for.
const (
	kindBoundary       = "boundary"
	kindNegation       = "negation"
	kindErrorReturn    = "error return removed"
	kindStatement      = "statement removed"
	kindSwap           = "statements swapped"
	kindBackground     = "context.Background"
	kindLock           = "lock removed"
	kindNonBlocking    = "send made non-blocking"
	kindBlocking       = "send made blocking"
	kindLogic          = "&& and || swapped"
	kindConditionTrue  = "condition made true"
	kindConditionFalse = "condition made false"
	kindOffByOne       = "off by one"
	kindLiteral        = "literal off by one"
)

// needsRace reports whether a mutant changes how code synchronises
// rather than what it decides: only the race detector sees it, so it runs
// in a test binary built with -race.
func needsRace(m mutant) bool {
	return m.kind == kindLock || strings.Contains(m.desc, "Lock()") || strings.Contains(m.desc, "Unlock()")
}

// mutantFamily names the family of a kind, for the per-family kill rate.
func mutantFamily(kind string) string {
	switch kind {
	case kindBoundary, kindNegation:
		return "comparison"
	case kindNonBlocking, kindBlocking:
		return "channel send"
	case kindLogic, kindConditionTrue, kindConditionFalse:
		return "condition"
	}
	return kind
}

// mutantHelpers are the functions the realistic operators call; they live
// in the switch file, beside kataMutantID.
const mutantHelpers = `
// kataCtx is ctx, or context.Background() when mutant id is chosen.
func kataCtx(id int, ctx context.Context) context.Context {
	if kataMutantID == id {
		return context.Background()
	}
	return ctx
}

// kataOff is v, or v plus or minus one when mutant up or down is chosen.
func kataOff[T ~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64](up, down int, v T) T {
	switch kataMutantID {
	case up:
		return v + 1
	case down:
		return v - 1
	}
	return v
}
`

// realisticMutator adds the realistic operators' mutants and sites for
// one function declaration.
type realisticMutator struct {
	fn    string
	off   func(token.Pos) int
	raw   func(ast.Node) string
	add   func(n ast.Node, fn, kind, desc string) int
	sites *[]site
	// literals holds the type of each numeric literal that can be
	// mutated, by offset (see literalTypes); nil means none.
	literals map[int]string
	// roomy names the channels the function makes with a buffer and
	// sends to once: that send never blocks, so making it non-blocking
	// changes nothing.
	roomy map[string]bool
	// roomySizes are the buffer sizes in those channels' make calls: one
	// more slot for the one send is never used.
	roomySizes map[*ast.BasicLit]bool
}

// neverBlocks reports whether send is the one send to a buffered channel
// the function made.
func (rm *realisticMutator) neverBlocks(send *ast.SendStmt) bool {
	id, ok := send.Chan.(*ast.Ident)
	return ok && rm.roomy[id.Name]
}

// roomyChannels finds the channels made in body with make(chan T, n),
// n > 0 a literal, that body sends to exactly once, and those literals.
func roomyChannels(body *ast.BlockStmt) (map[string]bool, map[*ast.BasicLit]bool) {
	buffered := map[string]*ast.BasicLit{}
	sends := map[string]int{}
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, rhs := range n.Rhs {
				call, ok := rhs.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 || i >= len(n.Lhs) {
					continue
				}
				fn, ok := call.Fun.(*ast.Ident)
				_, isChan := call.Args[0].(*ast.ChanType)
				size, isLit := call.Args[1].(*ast.BasicLit)
				if id, isIdent := n.Lhs[i].(*ast.Ident); ok && fn.Name == "make" && isChan && isLit && size.Value != "0" && isIdent {
					buffered[id.Name] = size
				}
			}
		case *ast.SendStmt:
			if id, ok := n.Chan.(*ast.Ident); ok {
				sends[id.Name]++
			}
		}
		return true
	})
	roomy, sizes := map[string]bool{}, map[*ast.BasicLit]bool{}
	for name, size := range buffered {
		if sends[name] == 1 {
			roomy[name] = true
			sizes[size] = true
		}
	}
	return roomy, sizes
}

// wrap adds a site that keeps n's rendered text whole and puts code
// around it.
func (rm *realisticMutator) wrap(n ast.Node, render func(inner string) string) {
	start, end := rm.off(n.Pos()), rm.off(n.End())
	*rm.sites = append(*rm.sites, site{start: start, end: end, wrapper: true, render: func(text func(int, int) string) string {
		return render(text(start, end))
	}})
}

// mutate walks the function body once and adds every realistic mutant.
func (rm *realisticMutator) mutate(body *ast.BlockStmt) {
	rm.roomy, rm.roomySizes = roomyChannels(body)
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BlockStmt:
			rm.statements(n.List)
		case *ast.CaseClause:
			rm.statements(n.Body)
		case *ast.CommClause:
			rm.statements(n.Body)
		case *ast.IfStmt:
			rm.condition(n.Cond)
		case *ast.SwitchStmt:
			if n.Tag == nil {
				for _, c := range n.Body.List {
					for _, e := range c.(*ast.CaseClause).List {
						rm.condition(e)
					}
				}
			}
		case *ast.SelectStmt:
			rm.selectSend(n)
		case *ast.BinaryExpr:
			rm.logic(n)
		case *ast.CallExpr:
			rm.contextArgs(n)
		case *ast.IndexExpr:
			rm.offByOne(n.Index)
		case *ast.SliceExpr:
			rm.offByOne(n.Low)
			rm.offByOne(n.High)
		case *ast.BasicLit:
			rm.literal(n)
		}
		return true
	})
}

// statements adds the mutants of one statement list: each statement
// removed, each pair swapped, a lock and its unlock removed together,
// and each send made non-blocking.
func (rm *realisticMutator) statements(list []ast.Stmt) {
	for _, s := range list {
		if _, ok := s.(*ast.LabeledStmt); ok {
			return // moving code around a label may change what a goto means
		}
	}
	for i, s := range list {
		if removable(s) {
			id := rm.add(s, rm.fn, kindStatement, fmt.Sprintf("`%s` removed", firstLine(rm.raw(s))))
			rm.wrap(s, func(inner string) string { return fmt.Sprintf("if kataMutantID != %d { %s }", id, inner) })
		}
		if send, ok := s.(*ast.SendStmt); ok && !rm.neverBlocks(send) {
			id := rm.add(s, rm.fn, kindNonBlocking, fmt.Sprintf("`%s` -> `select { case %s: default: }`", rm.raw(s), rm.raw(s)))
			rm.wrap(s, func(inner string) string {
				return fmt.Sprintf("if kataMutantID == %d { select { case %s <- %s: default: } } else { %s }", id, rm.raw(send.Chan), rm.raw(send.Value), inner)
			})
		}
		if i+1 < len(list) {
			rm.swap(s, list[i+1], i+2 == len(list))
		}
		if x, lock, ok := lockCall(s); ok {
			for _, later := range list[i+1:] {
				if unlockOf(later, x, lock) {
					id := rm.add(s, rm.fn, kindLock, fmt.Sprintf("`%s` and `%s` removed", rm.raw(s), rm.raw(later)))
					guard := func(inner string) string { return fmt.Sprintf("if kataMutantID != %d { %s }", id, inner) }
					rm.wrap(s, guard)
					rm.wrap(later, guard)
					break
				}
			}
		}
	}
}

// swap adds the mutant that runs a and b, adjacent statements, in the
// other order. The simple one of the two moves: it is left out where it
// stands and a copy of it, its own mutants left out, runs on the other
// side of its neighbour. bEnds says that b is the last statement of its
// list.
func (rm *realisticMutator) swap(a, b ast.Stmt, bEnds bool) {
	if !movable(a) || !movable(b) || isDefer(a) || isDefer(b) {
		// A deferred call runs when the function returns wherever it
		// stands: moving it by one statement changes nothing.
		return
	}
	desc := fmt.Sprintf("`%s` and `%s` swapped", firstLine(rm.raw(a)), firstLine(rm.raw(b)))
	switch {
	// Code after the last statement would end a function that a
	// terminating loop or switch ended before.
	case simple(a) && !(bEnds && isCompound(b)):
		id := rm.add(a, rm.fn, kindSwap, desc)
		rm.wrap(a, func(inner string) string { return fmt.Sprintf("if kataMutantID != %d { %s }", id, inner) })
		rm.wrap(b, func(inner string) string {
			return fmt.Sprintf("%s\nif kataMutantID == %d { %s }", inner, id, rm.raw(a))
		})
	case simple(b):
		id := rm.add(a, rm.fn, kindSwap, desc)
		rm.wrap(a, func(inner string) string {
			return fmt.Sprintf("if kataMutantID == %d { %s }\n%s", id, rm.raw(b), inner)
		})
		rm.wrap(b, func(inner string) string { return fmt.Sprintf("if kataMutantID != %d { %s }", id, inner) })
	}
}

// selectSend adds the mutant that turns a non-blocking send, a select of
// one send and a default, into a plain send that waits.
func (rm *realisticMutator) selectSend(s *ast.SelectStmt) {
	if len(s.Body.List) != 2 {
		return
	}
	var send *ast.CommClause
	hasDefault := false
	for _, c := range s.Body.List {
		cc := c.(*ast.CommClause)
		switch cc.Comm.(type) {
		case nil:
			hasDefault = true
		case *ast.SendStmt:
			send = cc
		}
	}
	if send == nil || !hasDefault {
		return
	}
	var body []string
	for _, st := range send.Body {
		body = append(body, rm.raw(st))
	}
	id := rm.add(s, rm.fn, kindBlocking, fmt.Sprintf("`select { case %s: ... default: ... }` -> `%s`", rm.raw(send.Comm), rm.raw(send.Comm)))
	rm.wrap(s, func(inner string) string {
		return fmt.Sprintf("if kataMutantID == %d { %s\n%s } else { %s }", id, rm.raw(send.Comm), strings.Join(body, "\n"), inner)
	})
}

// condition adds the mutants that decide a condition in advance.
func (rm *realisticMutator) condition(cond ast.Expr) {
	if cond == nil || isErrCheck(cond) {
		return // an error check decided in advance is an error return removed, or an error made up
	}
	always := rm.add(cond, rm.fn, kindConditionTrue, fmt.Sprintf("`%s` -> `true`", firstLine(rm.raw(cond))))
	never := rm.add(cond, rm.fn, kindConditionFalse, fmt.Sprintf("`%s` -> `false`", firstLine(rm.raw(cond))))
	rm.wrap(cond, func(inner string) string {
		return fmt.Sprintf("(kataMutantID == %d || kataMutantID != %d && (%s))", always, never, inner)
	})
}

// logic adds the mutant that swaps && and ||.
func (rm *realisticMutator) logic(be *ast.BinaryExpr) {
	var alt token.Token
	switch be.Op {
	case token.LAND:
		alt = token.LOR
	case token.LOR:
		alt = token.LAND
	default:
		return
	}
	x, y := be.X, be.Y
	id := rm.add(be, rm.fn, kindLogic, fmt.Sprintf("`%s` -> `%s %s %s`", firstLine(rm.raw(be)), firstLine(rm.raw(x)), alt, firstLine(rm.raw(y))))
	*rm.sites = append(*rm.sites, site{start: rm.off(be.Pos()), end: rm.off(be.End()), render: func(text func(int, int) string) string {
		xs, ys := text(rm.off(x.Pos()), rm.off(x.End())), text(rm.off(y.Pos()), rm.off(y.End()))
		return fmt.Sprintf("(kataMutantID == %d && ((%s) %s (%s)) || kataMutantID != %d && ((%s) %s (%s)))", id, xs, alt, ys, id, xs, be.Op, ys)
	}})
}

// contextArgs adds the mutant that passes context.Background() instead
// of a call's context: the call then outlives the caller's deadline and
// cancellation.
func (rm *realisticMutator) contextArgs(call *ast.CallExpr) {
	for _, arg := range call.Args {
		if !isContextExpr(arg) {
			continue
		}
		id := rm.add(arg, rm.fn, kindBackground, fmt.Sprintf("`%s` -> `context.Background()` in `%s`", rm.raw(arg), firstLine(rm.raw(call))))
		rm.wrap(arg, func(inner string) string { return fmt.Sprintf("kataCtx(%d, %s)", id, inner) })
	}
}

// offByOne adds the mutants that move an integer index or slice bound
// by one either way.
func (rm *realisticMutator) offByOne(e ast.Expr) {
	if e == nil || !looksLikeInteger(e) {
		return
	}
	up := rm.add(e, rm.fn, kindOffByOne, fmt.Sprintf("`%s` -> `%s+1`", rm.raw(e), rm.raw(e)))
	down := rm.add(e, rm.fn, kindOffByOne, fmt.Sprintf("`%s` -> `%s-1`", rm.raw(e), rm.raw(e)))
	rm.wrap(e, func(inner string) string { return fmt.Sprintf("kataOff(%d, %d, %s)", up, down, inner) })
}

// isErrCheck reports whether cond is err != nil or err == nil.
func isErrCheck(cond ast.Expr) bool {
	be, ok := cond.(*ast.BinaryExpr)
	if !ok || (be.Op != token.NEQ && be.Op != token.EQL) {
		return false
	}
	x, okX := be.X.(*ast.Ident)
	y, okY := be.Y.(*ast.Ident)
	return okX && okY && (x.Name == "err" && y.Name == "nil" || x.Name == "nil" && y.Name == "err")
}

// removable reports whether leaving s out is a mistake someone makes and
// still compiles: a call, a send, an assignment to something declared
// before, ++ or --, a defer or a go statement. A panic stays: without
// it a function may lack its return.
func removable(s ast.Stmt) bool {
	switch s := s.(type) {
	case *ast.ExprStmt:
		call, ok := s.X.(*ast.CallExpr)
		if !ok {
			return true // a receive
		}
		fn, ok := call.Fun.(*ast.Ident)
		return !ok || fn.Name != "panic"
	case *ast.AssignStmt:
		return s.Tok != token.DEFINE
	case *ast.SendStmt, *ast.IncDecStmt, *ast.DeferStmt, *ast.GoStmt:
		return true
	}
	return false
}

// movable reports whether s may change places with its neighbour: not a
// declaration, whose names the other statement might use, and not a
// statement that ends the block.
func movable(s ast.Stmt) bool {
	switch s := s.(type) {
	case *ast.AssignStmt:
		return s.Tok != token.DEFINE
	case *ast.DeclStmt, *ast.ReturnStmt, *ast.BranchStmt, *ast.LabeledStmt, *ast.EmptyStmt:
		return false
	case *ast.ExprStmt:
		return removable(s)
	}
	return true
}

func isDefer(s ast.Stmt) bool {
	_, ok := s.(*ast.DeferStmt)
	return ok
}

// simple reports whether s holds no statements of its own, so a copy of
// it does not copy the mutants inside a block.
func simple(s ast.Stmt) bool {
	if isCompound(s) {
		return false
	}
	hasFunc := false
	ast.Inspect(s, func(n ast.Node) bool {
		if _, ok := n.(*ast.FuncLit); ok {
			hasFunc = true
		}
		return !hasFunc
	})
	return !hasFunc
}

// lockCall reports whether s is x.Lock() or x.RLock(), and which.
func lockCall(s ast.Stmt) (x, method string, ok bool) {
	es, ok := s.(*ast.ExprStmt)
	if !ok {
		return "", "", false
	}
	call, ok := es.X.(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return "", "", false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || (sel.Sel.Name != "Lock" && sel.Sel.Name != "RLock") {
		return "", "", false
	}
	return exprString(sel.X), sel.Sel.Name, true
}

// unlockOf reports whether s is the unlock, deferred or not, that matches
// x's lock.
func unlockOf(s ast.Stmt, x, lock string) bool {
	var call *ast.CallExpr
	switch s := s.(type) {
	case *ast.ExprStmt:
		call, _ = s.X.(*ast.CallExpr)
	case *ast.DeferStmt:
		call = s.Call
	}
	if call == nil || len(call.Args) != 0 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == map[string]string{"Lock": "Unlock", "RLock": "RUnlock"}[lock] && exprString(sel.X) == x
}

// isContextExpr reports whether e is, by its look, a context: ctx, or a
// stream's Context().
func isContextExpr(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "ctx"
	case *ast.CallExpr:
		sel, ok := e.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Context" && len(e.Args) == 0
	}
	return false
}

// integerName matches the names that hold integers by convention.
var integerName = regexp.MustCompile(`^(i|j|n|idx|index|offset)$`)

// looksLikeInteger reports whether an index or bound is, by its look, an
// integer: a literal, a conventional integer name, len or cap, or a sum
// with one of those.
func looksLikeInteger(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return e.Kind == token.INT
	case *ast.Ident:
		return integerName.MatchString(e.Name)
	case *ast.CallExpr:
		fn, ok := e.Fun.(*ast.Ident)
		return ok && (fn.Name == "len" || fn.Name == "cap")
	case *ast.BinaryExpr:
		return (e.Op == token.ADD || e.Op == token.SUB) && (looksLikeInteger(e.X) || looksLikeInteger(e.Y))
	case *ast.ParenExpr:
		return looksLikeInteger(e.X)
	}
	return false
}

// exprString renders a selector chain such as s.hub.mu.
func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	case *ast.ParenExpr:
		return "(" + exprString(e.X) + ")"
	}
	return fmt.Sprintf("%T", e)
}
