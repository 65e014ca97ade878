package core

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A lesson README marks the shell blocks that the runner executes, so that
// what a reader copies is what the check proved. The convention:
//
//   - An HTML comment on a line of its own, <!-- checked: KIND -->, marks the
//     fenced block that follows it (blank lines may come between; anything
//     else may not). The block is fenced with ``` and labelled sh or bash.
//     Markdown renders neither the comment nor anything else of the
//     convention specially, so the reader sees a plain shell block.
//   - KIND "grpcurl server" marks the block that starts the day's server: it
//     holds exactly one command, "go run <args>", which the runner starts
//     with the reference solutions swapped in.
//   - KIND "grpcurl" marks blocks of commands the runner runs, in README
//     order, each through bash -c from the repository root while that
//     server runs.
//
// Inside a block:
//
//   - A command is a line that is not blank and does not start with #,
//     together with the lines that continue it (a line ending in \) and the
//     bodies of its here-documents (<<EOF, <<'EOF', <<-EOF, up to the line
//     holding only the delimiter).
//   - "#> TEXT" lines after a command show what it prints. Each must match
//     a line of its output (stdout and stderr together), in the order
//     written; output lines in between are allowed. Both sides are compared
//     without leading and trailing spaces, and "..." in TEXT stands for any
//     text, for what changes from run to run such as a random id. A "#>"
//     line with nothing after it is spacing only.
//   - "# exit status N" (optionally followed by an explanation) says the
//     command must exit with status N; without it, it must exit 0.
//   - Every other # line is an ordinary comment.
//
// An unknown KIND, a marker without its block, output lines before any
// command or an unclosed block or here-document is an error, so a typo
// cannot quietly switch a check off.

// Kinds of checked blocks.
const (
	BlockGrpcurl = "grpcurl"
	BlockServer  = "grpcurl server"
)

// checkedMarker matches a marker line; the kind is checked separately so
// that an unknown one is reported rather than ignored.
var checkedMarker = regexp.MustCompile(`^<!--\s*checked:\s*(.*?)\s*-->$`)

// ExitDirective matches "# exit status N": the part of the line the
// check reads, whatever explanation follows.
var ExitDirective = regexp.MustCompile(`^#\s*exit status\s+(\d+)\b`)

// heredocStart matches a here-document operator and its delimiter word,
// quoted or not; a here-string (<<<) is not one.
var heredocStart = regexp.MustCompile(`(?:^|[^<])<<(-?)\s*(?:'([A-Za-z_][A-Za-z0-9_]*)'|"([A-Za-z_][A-Za-z0-9_]*)"|([A-Za-z_][A-Za-z0-9_]*))`)

// CheckedBlock is one marked fenced block of a README.
type CheckedBlock struct {
	Kind     string
	Line     int // line of the opening fence, from 1
	Commands []ReadmeCommand
}

// ReadmeCommand is one command of a checked block and what it must do.
type ReadmeCommand struct {
	Line   int    // line where the command starts, from 1
	Text   string // what bash runs: the command's lines, here-documents included
	Expect []string
	Exit   int
}

// Summary is the command's first line, with a note of how many more lines
// it has, for progress output.
func (c ReadmeCommand) Summary() string {
	first, rest, more := strings.Cut(c.Text, "\n")
	if !more {
		return first
	}
	n := strings.Count(rest, "\n") + 1
	if n == 1 {
		return first + " [+1 line]"
	}
	return fmt.Sprintf("%s [+%d lines]", first, n)
}

// ParseCheckedBlocks finds the marked blocks of a README and parses their
// commands.
func ParseCheckedBlocks(readme string) ([]CheckedBlock, error) {
	lines := strings.Split(strings.ReplaceAll(readme, "\r\n", "\n"), "\n")
	var blocks []CheckedBlock
	for i := 0; i < len(lines); i++ {
		m := checkedMarker.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			continue
		}
		kind := strings.Join(strings.Fields(m[1]), " ")
		if kind != BlockGrpcurl && kind != BlockServer {
			return nil, fmt.Errorf("line %d: unknown checked block kind %q, want %q or %q", i+1, m[1], BlockGrpcurl, BlockServer)
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j == len(lines) || !isShellFence(lines[j]) {
			return nil, fmt.Errorf("line %d: <!-- checked: %s --> must be followed by a ```sh or ```bash block", i+1, kind)
		}
		fence := strings.TrimSpace(lines[j])
		ticks := len(fence) - len(strings.TrimLeft(fence, "`"))
		end := j + 1
		for end < len(lines) && !isClosingFence(lines[end], ticks) {
			end++
		}
		if end == len(lines) {
			return nil, fmt.Errorf("line %d: the block is not closed", j+1)
		}
		commands, err := parseCommands(lines[j+1:end], j+2)
		if err != nil {
			return nil, err
		}
		if len(commands) == 0 {
			return nil, fmt.Errorf("line %d: the checked block holds no command", j+1)
		}
		blocks = append(blocks, CheckedBlock{Kind: kind, Line: j + 1, Commands: commands})
		i = end
	}
	return blocks, nil
}

// isShellFence reports whether line opens a fenced block labelled sh or
// bash.
func isShellFence(line string) bool {
	s := strings.TrimSpace(line)
	if !strings.HasPrefix(s, "```") {
		return false
	}
	info := strings.Fields(strings.TrimLeft(s, "`"))
	return len(info) > 0 && (info[0] == "sh" || info[0] == "bash")
}

// isClosingFence reports whether line closes a block opened with ticks
// backticks.
func isClosingFence(line string, ticks int) bool {
	s := strings.TrimSpace(line)
	return len(s) >= ticks && strings.Trim(s, "`") == ""
}

// parseCommands parses the lines inside one block; first is the README line
// number of lines[0].
func parseCommands(lines []string, first int) ([]ReadmeCommand, error) {
	var commands []ReadmeCommand
	var cur *ReadmeCommand
	exitSet := false
	for i := 0; i < len(lines); i++ {
		lineNo := first + i
		trimmed := strings.TrimSpace(lines[i])
		switch {
		case trimmed == "":
		case strings.HasPrefix(trimmed, "#>"):
			if cur == nil {
				return nil, fmt.Errorf("line %d: output line before any command", lineNo)
			}
			if want := strings.TrimSpace(strings.TrimPrefix(trimmed, "#>")); want != "" {
				cur.Expect = append(cur.Expect, want)
			}
		case ExitDirective.MatchString(trimmed):
			if cur == nil {
				return nil, fmt.Errorf("line %d: exit status before any command", lineNo)
			}
			if exitSet {
				return nil, fmt.Errorf("line %d: a second exit status for the command of line %d", lineNo, cur.Line)
			}
			n, err := strconv.Atoi(ExitDirective.FindStringSubmatch(trimmed)[1])
			if err != nil || n > 255 {
				return nil, fmt.Errorf("line %d: exit status %q is not between 0 and 255", lineNo, trimmed)
			}
			cur.Exit, exitSet = n, true
		case strings.HasPrefix(trimmed, "#"):
			// An ordinary comment.
		default:
			text, next, err := readCommand(lines, i, first)
			if err != nil {
				return nil, err
			}
			commands = append(commands, ReadmeCommand{Line: lineNo, Text: text})
			cur, exitSet = &commands[len(commands)-1], false
			i = next - 1
		}
	}
	return commands, nil
}

// readCommand reads the command starting at lines[start]: its continuation
// lines, then the bodies of its here-documents in order. It returns the
// command's text and the index of the line after it.
func readCommand(lines []string, start, first int) (string, int, error) {
	i := start
	var cmdLines []string
	for {
		if i == len(lines) {
			return "", 0, fmt.Errorf("line %d: the command ends with \\ at the end of the block", first+i-1)
		}
		cmdLines = append(cmdLines, lines[i])
		i++
		if !strings.HasSuffix(strings.TrimRight(lines[i-1], " \t"), `\`) {
			break
		}
	}
	text := append([]string(nil), cmdLines...)
	for _, doc := range heredocs(strings.Join(cmdLines, "\n")) {
		for {
			if i == len(lines) {
				return "", 0, fmt.Errorf("line %d: here-document %s is not closed before the end of the block", first+start, doc.delim)
			}
			line := lines[i]
			text = append(text, line)
			i++
			if doc.stripTabs {
				line = strings.TrimLeft(line, "\t")
			}
			if line == doc.delim {
				break
			}
		}
	}
	return strings.Join(text, "\n"), i, nil
}

// heredoc is one here-document a command opens.
type heredoc struct {
	delim     string
	stripTabs bool // <<-: leading tabs are removed from its lines
}

// heredocs lists the here-documents a command opens, in order.
func heredocs(command string) []heredoc {
	var docs []heredoc
	for _, m := range heredocStart.FindAllStringSubmatch(command, -1) {
		docs = append(docs, heredoc{delim: m[2] + m[3] + m[4], stripTabs: m[1] == "-"})
	}
	return docs
}

// expectPattern compiles an expected output line: the text must match a
// whole output line (spaces at either end aside), with "..." matching any
// text.
func expectPattern(want string) *regexp.Regexp {
	parts := strings.Split(strings.TrimSpace(want), "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// MissingOutput returns the expected lines that output lacks: each must
// match an output line after the one the previous expected line matched.
func MissingOutput(output string, expect []string) []string {
	lines := strings.Split(output, "\n")
	var missing []string
	next := 0
	for _, want := range expect {
		re := expectPattern(want)
		found := false
		for j := next; j < len(lines); j++ {
			if re.MatchString(strings.TrimSpace(lines[j])) {
				next, found = j+1, true
				break
			}
		}
		if !found {
			missing = append(missing, want)
		}
	}
	return missing
}
