package main

import (
	"reflect"
	"testing"
)

func TestParseInvocation(t *testing.T) {
	antipatterns, _ := findCommand("antipatterns")
	demo, _ := findCommand("demo")
	lint, _ := findCommand("lint")
	stubs, _ := findCommand("stubs")

	tests := []struct {
		name    string
		cmd     command
		args    []string
		want    invocation
		wantErr bool
	}{
		{"no arguments", stubs, nil, invocation{flags: map[string]string{}}, false},
		{"day", stubs, []string{"48"}, invocation{day: "48", flags: map[string]string{}}, false},
		{"flag after day", antipatterns, []string{"48", "-only", "no_path_check"},
			invocation{day: "48", flags: map[string]string{"only": "no_path_check"}}, false},
		{"flag before day with =", antipatterns, []string{"--only=x", "day48_client_streaming"},
			invocation{day: "day48_client_streaming", flags: map[string]string{"only": "x"}}, false},
		{"bool flag and extra", demo, []string{"-check", "48", "--", "-once", "-addr", ":0"},
			invocation{day: "48", flags: map[string]string{"check": "true"}, extra: []string{"-once", "-addr", ":0"}}, false},
		{"extra only", demo, []string{"--", "-once"},
			invocation{flags: map[string]string{}, extra: []string{"-once"}}, false},
		{"bool flag false", demo, []string{"-check=false"}, invocation{flags: map[string]string{"check": "false"}}, false},
		{"bad bool", demo, []string{"-check=maybe"}, invocation{}, true},
		{"missing value", antipatterns, []string{"-only"}, invocation{}, true},
		{"unknown flag", stubs, []string{"-v"}, invocation{}, true},
		{"two days", stubs, []string{"48", "49"}, invocation{}, true},
		{"day where none is taken", lint, []string{"48"}, invocation{}, true},
		{"extra where none is taken", stubs, []string{"--", "-v"}, invocation{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseInvocation(tc.cmd, tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseInvocation(%s, %q) = %+v, want an error", tc.cmd.name, tc.args, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseInvocation(%s, %q) error = %v", tc.cmd.name, tc.args, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseInvocation(%s, %q) = %+v, want %+v", tc.cmd.name, tc.args, got, tc.want)
			}
		})
	}
}

func TestInvocationFlag(t *testing.T) {
	inv := invocation{flags: map[string]string{"check": "true", "other": "false"}}
	if !inv.flag("check") || inv.flag("other") || inv.flag("missing") {
		t.Errorf("flag() on %v: got check=%v other=%v missing=%v, want true false false",
			inv.flags, inv.flag("check"), inv.flag("other"), inv.flag("missing"))
	}
}
