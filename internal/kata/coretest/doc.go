// Package coretest builds the inputs the runner's own tests share: the
// events `go test -json` prints, parsed the way the runner parses them,
// and a small lesson manifest.
package coretest
