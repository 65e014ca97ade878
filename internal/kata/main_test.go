package main

import (
	"reflect"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

func TestParseInvocation(t *testing.T) {
	antipatterns, _ := findCommand("antipatterns")
	demo, _ := findCommand("demo")
	lint, _ := findCommand("lint")
	stubs, _ := findCommand("stubs")

	tests := []struct {
		name    string
		cmd     core.Command
		args    []string
		want    core.Invocation
		wantErr bool
	}{
		{"no arguments", stubs, nil, core.Invocation{Flags: map[string]string{}}, false},
		{"day", stubs, []string{"48"}, core.Invocation{Day: "48", Flags: map[string]string{}}, false},
		{"flag after day", antipatterns, []string{"48", "-only", "no_path_check"},
			core.Invocation{Day: "48", Flags: map[string]string{"only": "no_path_check"}}, false},
		{"flag before day with =", antipatterns, []string{"--only=x", "day48_client_streaming"},
			core.Invocation{Day: "day48_client_streaming", Flags: map[string]string{"only": "x"}}, false},
		{"bool flag and extra", demo, []string{"-check", "48", "--", "-once", "-addr", ":0"},
			core.Invocation{Day: "48", Flags: map[string]string{"check": "true"}, Extra: []string{"-once", "-addr", ":0"}}, false},
		{"extra only", demo, []string{"--", "-once"},
			core.Invocation{Flags: map[string]string{}, Extra: []string{"-once"}}, false},
		{"bool flag false", demo, []string{"-check=false"}, core.Invocation{Flags: map[string]string{"check": "false"}}, false},
		{"bad bool", demo, []string{"-check=maybe"}, core.Invocation{}, true},
		{"missing value", antipatterns, []string{"-only"}, core.Invocation{}, true},
		{"unknown flag", stubs, []string{"-v"}, core.Invocation{}, true},
		{"two days", stubs, []string{"48", "49"}, core.Invocation{}, true},
		{"day where none is taken", lint, []string{"48"}, core.Invocation{}, true},
		{"extra where none is taken", stubs, []string{"--", "-v"}, core.Invocation{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := core.ParseInvocation(tc.cmd, tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseInvocation(%s, %q) = %+v, want an error", tc.cmd.Name, tc.args, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseInvocation(%s, %q) error = %v", tc.cmd.Name, tc.args, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseInvocation(%s, %q) = %+v, want %+v", tc.cmd.Name, tc.args, got, tc.want)
			}
		})
	}
}

func TestInvocationFlag(t *testing.T) {
	inv := core.Invocation{Flags: map[string]string{"check": "true", "other": "false"}}
	if !inv.Flag("check") || inv.Flag("other") || inv.Flag("missing") {
		t.Errorf("flag() on %v: got check=%v other=%v missing=%v, want true false false",
			inv.Flags, inv.Flag("check"), inv.Flag("other"), inv.Flag("missing"))
	}
}
