package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Command is one subcommand of the runner.
type Command struct {
	Name     string
	Args     string // synopsis of the arguments, for the usage text
	Summary  string
	TakesDay bool
	// boolFlags and valueFlags are the command's own flags, written
	// after the command name (-check, -only NAME).
	BoolFlags  []string
	ValueFlags []string
	// takesExtra says whether arguments after "--" are accepted.
	TakesExtra bool
	Run        func(ctx context.Context, r *Repo, inv Invocation) error
}

// Invocation is a parsed command line after the command name.
type Invocation struct {
	Day   string            // "" means every day
	Flags map[string]string // the command's own flags; bool flags hold "true" or "false"
	Extra []string          // everything after "--"
}

// Flag reports a bool flag of the invocation.
func (inv Invocation) Flag(name string) bool { return inv.Flags[name] == "true" }

// ParseInvocation reads "[DAY] [flags] [-- extra]". Flags may come before or
// after the day, as in "antipatterns 48 -only no_path_check", which the flag
// package cannot do because it stops at the first positional argument.
func ParseInvocation(cmd Command, args []string) (Invocation, error) {
	inv := Invocation{Flags: map[string]string{}}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			if !cmd.TakesExtra {
				return inv, errors.New("this command takes no arguments after --")
			}
			inv.Extra = args[i+1:]
			break
		}
		if len(arg) > 1 && strings.HasPrefix(arg, "-") {
			name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			switch {
			case slices.Contains(cmd.BoolFlags, name):
				if !hasValue {
					value = "true"
				}
				b, err := strconv.ParseBool(value)
				if err != nil {
					return inv, fmt.Errorf("flag -%s: want true or false, got %q", name, value)
				}
				inv.Flags[name] = strconv.FormatBool(b)
			case slices.Contains(cmd.ValueFlags, name):
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
				inv.Flags[name] = value
			default:
				hint := ""
				if cmd.TakesExtra {
					hint = " (put flags for the go command after --)"
				}
				return inv, fmt.Errorf("unknown flag %s%s", arg, hint)
			}
			continue
		}
		if !cmd.TakesDay {
			return inv, fmt.Errorf("unexpected argument %q", arg)
		}
		if inv.Day != "" {
			return inv, fmt.Errorf("more than one day given: %q and %q", inv.Day, arg)
		}
		inv.Day = arg
	}
	return inv, nil
}
