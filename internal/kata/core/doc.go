// Package core is what both rooms of the lesson runner stand on: the
// repository and its days, the lesson manifest (kata.json, the planted
// mistakes, the hints), overlays that swap the reference solutions in,
// running `go test` and reading its -json stream, running commands with
// their process groups, starting a day's server, and the README blocks
// the checks execute. It imports neither the learner's loop nor the
// instructor's checks.
package core
