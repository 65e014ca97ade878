package main

import (
	"fmt"
	"strings"
)

// noDays turns "there are no days" into a note rather than an error, and
// passes any other error on.
func noDays(err error) error {
	if err == nil {
		fmt.Println("no days found (no day*_*/kata.json): nothing to do")
	}
	return err
}

// bullet formats a possibly multi-line problem as a list item.
func bullet(s string) string {
	return "  - " + strings.ReplaceAll(s, "\n", "\n    ")
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
