package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// command is one subcommand of the runner.
type command struct {
	name     string
	args     string // synopsis of the arguments, for the usage text
	summary  string
	takesDay bool
	// boolFlags and valueFlags are the command's own flags, written
	// after the command name (-check, -only NAME).
	boolFlags  []string
	valueFlags []string
	// takesExtra says whether arguments after "--" are accepted.
	takesExtra bool
	run        func(ctx context.Context, r *repo, inv invocation) error
}

// invocation is a parsed command line after the command name.
type invocation struct {
	day   string            // "" means every day
	flags map[string]string // the command's own flags; bool flags hold "true" or "false"
	extra []string          // everything after "--"
}

// flag reports a bool flag of the invocation.
func (inv invocation) flag(name string) bool { return inv.flags[name] == "true" }

// parseInvocation reads "[DAY] [flags] [-- extra]". Flags may come before or
// after the day, as in "antipatterns 48 -only no_path_check", which the flag
// package cannot do because it stops at the first positional argument.
func parseInvocation(cmd command, args []string) (invocation, error) {
	inv := invocation{flags: map[string]string{}}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			if !cmd.takesExtra {
				return inv, errors.New("this command takes no arguments after --")
			}
			inv.extra = args[i+1:]
			break
		}
		if len(arg) > 1 && strings.HasPrefix(arg, "-") {
			name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			switch {
			case slices.Contains(cmd.boolFlags, name):
				if !hasValue {
					value = "true"
				}
				b, err := strconv.ParseBool(value)
				if err != nil {
					return inv, fmt.Errorf("flag -%s: want true or false, got %q", name, value)
				}
				inv.flags[name] = strconv.FormatBool(b)
			case slices.Contains(cmd.valueFlags, name):
				if !hasValue {
					if i+1 >= len(args) {
						return inv, fmt.Errorf("flag -%s needs a value", name)
					}
					i++
					value = args[i]
				}
				if value == "" {
					return inv, fmt.Errorf("flag -%s needs a non-empty value", name)
				}
				inv.flags[name] = value
			default:
				hint := ""
				if cmd.takesExtra {
					hint = " (put flags for the go command after --)"
				}
				return inv, fmt.Errorf("unknown flag %s%s", arg, hint)
			}
			continue
		}
		if !cmd.takesDay {
			return inv, fmt.Errorf("unexpected argument %q", arg)
		}
		if inv.day != "" {
			return inv, fmt.Errorf("more than one day given: %q and %q", inv.day, arg)
		}
		inv.day = arg
	}
	return inv, nil
}
