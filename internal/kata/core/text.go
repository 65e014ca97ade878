package core

import (
	"fmt"
	"strings"
)

// NoDays turns "there are no days" into a note rather than an error, and
// passes any other error on.
func NoDays(err error) error {
	if err == nil {
		fmt.Println("no days found (no day*_*/kata.json): nothing to do")
	}
	return err
}

// Bullet formats a possibly multi-line problem as a list item.
func Bullet(s string) string {
	return "  - " + strings.ReplaceAll(s, "\n", "\n    ")
}

// Indent prefixes every line of s.
func Indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// QuoteOutput indents what a command printed, for a failure report.
func QuoteOutput(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (nothing)"
	}
	return Indent(s, "    ")
}
