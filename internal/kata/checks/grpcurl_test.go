package checks

import (
	"reflect"
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

func TestGoRunArgs(t *testing.T) {
	got, err := goRunArgs(core.ReadmeCommand{Text: "go run ./day48_client_streaming -serve -addr=127.0.0.1:8080"})
	if want := []string{"./day48_client_streaming", "-serve", "-addr=127.0.0.1:8080"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("goRunArgs(plain go run) = %q, %v, want %q", got, err, want)
	}
	for _, c := range []core.ReadmeCommand{
		{Text: "go build ./day48"},
		{Text: "go run"},
		{Text: "make demo"},
		{Text: "go run ./day48 -serve &"},
		{Text: "go run ./day48 -serve 2>/dev/null"},
		{Text: "go run ./day48 -addr \"$ADDR\""},
		{Text: "go run ./day48 \\\n  -serve"},
		{Text: "go run ./day48", Expect: []string{"Serving"}},
		{Text: "go run ./day48", Exit: 1},
	} {
		if got, err := goRunArgs(c); err == nil {
			t.Errorf("goRunArgs(%+v) = %q, want an error", c, got)
		}
	}
}

func TestCommandsAddress(t *testing.T) {
	one := []core.ReadmeCommand{
		{Text: ".bin/grpcurl -plaintext 127.0.0.1:8080 list"},
		{Text: ".bin/grpcurl -d @ 127.0.0.1:8080 x/Y <<'EOF'\n{\"addr\": \"10.0.0.1:80\"}\nEOF"},
	}
	if got, err := commandsAddress(one); err != nil || got != "127.0.0.1:8080" {
		t.Errorf("commandsAddress(one address) = %q, %v, want 127.0.0.1:8080", got, err)
	}
	if got, err := commandsAddress([]core.ReadmeCommand{{Text: "echo hi"}}); err == nil {
		t.Errorf("commandsAddress(no address) = %q, want an error", got)
	}
	two := append(one, core.ReadmeCommand{Text: ".bin/grpcurl -plaintext localhost:9090 list"})
	if got, err := commandsAddress(two); err == nil || !strings.Contains(err.Error(), "127.0.0.1:8080, localhost:9090") {
		t.Errorf("commandsAddress(two addresses) = %q, %v, want an error naming both", got, err)
	}
}
