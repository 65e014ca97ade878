package core

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sampleReadme = "# Day 99\n" +
	"\n" +
	"A block that is not marked is not run:\n" +
	"\n" +
	"```sh\n" +
	"rm -rf /\n" +
	"```\n" +
	"\n" +
	"<!-- checked: grpcurl server -->\n" + // line 9
	"```sh\n" +
	"go run ./day99_x -serve\n" + // line 11
	"```\n" +
	"\n" +
	"<!--checked:  grpcurl-->\n" +
	"\n" +
	"```bash\n" + // line 16
	"# what is there\n" +
	".bin/grpcurl -plaintext 127.0.0.1:8080 list\n" + // line 18
	"#> grpc.health.v1.Health\n" +
	"#>\n" +
	"#>   streaming.v1.X   \n" +
	"\n" +
	".bin/grpcurl -plaintext \\\n" + // line 23
	"  -d @ 127.0.0.1:8080 streaming.v1.X/Send <<'EOF'\n" +
	"{\"a\": 1}\n" +
	"# not a comment: part of the here-document\n" +
	"EOF\n" +
	"# exit status 80 (64 + 16)\n" +
	"#> ERROR:\n" +
	"echo done\n" + // line 30
	"```\n"

func TestParseCheckedBlocks(t *testing.T) {
	for name, readme := range map[string]string{
		"LF":   sampleReadme,
		"CRLF": strings.ReplaceAll(sampleReadme, "\n", "\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCheckedBlocks(readme)
			if err != nil {
				t.Fatalf("parseCheckedBlocks(sample) error = %v", err)
			}
			want := []CheckedBlock{
				{Kind: BlockServer, Line: 10, Commands: []ReadmeCommand{
					{Line: 11, Text: "go run ./day99_x -serve"},
				}},
				{Kind: BlockGrpcurl, Line: 16, Commands: []ReadmeCommand{
					{Line: 18, Text: ".bin/grpcurl -plaintext 127.0.0.1:8080 list",
						Expect: []string{"grpc.health.v1.Health", "streaming.v1.X"}},
					{Line: 23, Text: ".bin/grpcurl -plaintext \\\n" +
						"  -d @ 127.0.0.1:8080 streaming.v1.X/Send <<'EOF'\n" +
						"{\"a\": 1}\n" +
						"# not a comment: part of the here-document\n" +
						"EOF",
						Expect: []string{"ERROR:"}, Exit: 80},
					{Line: 30, Text: "echo done"},
				}},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseCheckedBlocks(sample) =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseCheckedBlocksNone(t *testing.T) {
	got, err := ParseCheckedBlocks("# Title\n\n```sh\nmake check\n```\n<!-- another comment -->\n")
	if err != nil || len(got) != 0 {
		t.Errorf("parseCheckedBlocks(no markers) = %+v, %v, want no blocks and no error", got, err)
	}
}

func TestParseCheckedBlocksErrors(t *testing.T) {
	tests := []struct {
		name, readme, wantErr string
	}{
		{"unknown kind", "<!-- checked: grpcur -->\n```sh\nls\n```\n", `line 1: unknown checked block kind "grpcur"`},
		{"marker before text", "<!-- checked: grpcurl -->\nSome text.\n```sh\nls\n```\n", "line 1: <!-- checked: grpcurl --> must be followed by a ```sh"},
		{"marker before a go block", "<!-- checked: grpcurl -->\n```go\nfmt.Println()\n```\n", "must be followed by a ```sh"},
		{"marker at the end", "text\n<!-- checked: grpcurl -->\n\n", "line 2: <!-- checked: grpcurl --> must be followed"},
		{"unclosed block", "<!-- checked: grpcurl -->\n```sh\nls\n", "line 2: the block is not closed"},
		{"empty block", "<!-- checked: grpcurl -->\n```sh\n# only a comment\n```\n", "line 2: the checked block holds no command"},
		{"output before a command", "<!-- checked: grpcurl -->\n```sh\n#> out\nls\n```\n", "line 3: output line before any command"},
		{"exit status before a command", "<!-- checked: grpcurl -->\n```sh\n# exit status 1\nls\n```\n", "line 3: exit status before any command"},
		{"two exit statuses", "<!-- checked: grpcurl -->\n```sh\nls\n# exit status 1\n# exit status 2\n```\n", "line 5: a second exit status for the command of line 3"},
		{"exit status out of range", "<!-- checked: grpcurl -->\n```sh\nls\n# exit status 300\n```\n", "line 4: exit status"},
		{"unclosed here-document", "<!-- checked: grpcurl -->\n```sh\ncat <<EOF\nhello\n```\n", "line 3: here-document EOF is not closed"},
		{"continuation at the end", "<!-- checked: grpcurl -->\n```sh\nls \\\n```\n", "line 3: the command ends with \\"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCheckedBlocks(tc.readme)
			if err == nil {
				t.Fatalf("parseCheckedBlocks(%q) = %+v, want an error containing %q", tc.readme, got, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseCheckedBlocks(%q) error = %q, want it to contain %q", tc.readme, err, tc.wantErr)
			}
		})
	}
}

func TestParseCommandsHeredocs(t *testing.T) {
	lines := []string{
		"cat <<-END | paste - <<\"B\"",
		"\tone",
		"\tEND",
		"two",
		"B",
		"grep x <<< 'EOF'",
		"echo $((1<<2))",
		"#> 4",
	}
	got, err := parseCommands(lines, 1)
	if err != nil {
		t.Fatalf("parseCommands error = %v", err)
	}
	want := []ReadmeCommand{
		{Line: 1, Text: strings.Join(lines[:5], "\n")},
		{Line: 6, Text: lines[5]},
		{Line: 7, Text: lines[6], Expect: []string{"4"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseCommands =\n%+v\nwant\n%+v", got, want)
	}
}

func TestHeredocs(t *testing.T) {
	tests := map[string][]heredoc{
		"grpcurl -d @ host m <<'EOF'": {{delim: "EOF"}},
		`cat <<"END"`:                 {{delim: "END"}},
		"cat << EOF":                  {{delim: "EOF"}},
		"cat <<-X_1":                  {{delim: "X_1", stripTabs: true}},
		"cat <<A; cat <<B":            {{delim: "A"}, {delim: "B"}},
		"grep x <<< EOF":              nil,
		"echo $((1<<2))":              nil,
		"echo plain":                  nil,
	}
	for in, want := range tests {
		if got := heredocs(in); !reflect.DeepEqual(got, want) {
			t.Errorf("heredocs(%q) = %+v, want %+v", in, got, want)
		}
	}
}

func TestMissingOutput(t *testing.T) {
	output := "{\n  \"fileId\": \"2c47\",\n  \"fileName\": \"hello.txt\",\n  \"status\": \"DONE\"\n}\n"
	tests := []struct {
		name   string
		expect []string
		want   []string
	}{
		{"all, in order, without the indentation", []string{`"fileId": "2c47",`, `"status": "DONE"`}, nil},
		{"a wildcard", []string{`"fileId": "...",`, `"fileName": "hello...`}, nil},
		{"a wildcard line", []string{"...", `"fileName": "hello.txt",`}, nil},
		{"nothing expected", nil, nil},
		{"part of a line is not a line", []string{`"hello.txt"`}, []string{`"hello.txt"`}},
		{"out of order", []string{`"status": "DONE"`, `"fileName": "hello.txt",`}, []string{`"fileName": "hello.txt",`}},
		{"regexp characters are literal", []string{`"fileId": ".*",`}, []string{`"fileId": ".*",`}},
		{"a missing line does not stop the rest", []string{"nope", "}"}, []string{"nope"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MissingOutput(output, tc.expect); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("missingOutput(output, %q) = %q, want %q", tc.expect, got, tc.want)
			}
		})
	}
}

func TestCommandSummary(t *testing.T) {
	tests := map[string]string{
		"ls":                     "ls",
		"cat <<EOF\nEOF":         "cat <<EOF [+1 line]",
		"cat <<EOF\na\nb\nEOF":   "cat <<EOF [+3 lines]",
		"a \\\n  b <<'X'\nc\nX":  "a \\ [+3 lines]",
		"grpcurl list 127.0.0.1": "grpcurl list 127.0.0.1",
	}
	for text, want := range tests {
		if got := (ReadmeCommand{Text: text}).Summary(); got != want {
			t.Errorf("summary(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestPortFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := PortFree(addr); err == nil || !strings.Contains(err.Error(), addr+" is already in use") {
		t.Errorf("portFree(%s) while listening = %v, want an error saying it is in use", addr, err)
	}
	l.Close()
	if err := PortFree(addr); err != nil {
		t.Errorf("portFree(%s) after closing = %v, want nil", addr, err)
	}
}

func TestGoRunReport(t *testing.T) {
	tests := map[string]string{
		"Serving until Ctrl+C ...\n\nShutting down ...\n": "",
		"Shutting down ...\nexit status 1\n":              "exit status 1",
		"Serving until Ctrl+C ...\nsignal: interrupt\n":   "signal: interrupt",
		"":                                     "",
		"exit status 3 was the old one\nbye\n": "",
	}
	for out, want := range tests {
		if got := goRunReport(out); got != want {
			t.Errorf("goRunReport(%q) = %q, want %q", out, got, want)
		}
	}
}

// TestDayReadmes parses the checked blocks of every lesson README, so a
// broken marker is found without starting a server.
func TestDayReadmes(t *testing.T) {
	readmes, err := filepath.Glob(filepath.Join("..", "..", "..", "day*_*", "README*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(readmes) == 0 {
		t.Fatal("no lesson README found")
	}
	for _, path := range readmes {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseCheckedBlocks(string(data)); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}
