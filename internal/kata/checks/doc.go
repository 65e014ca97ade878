// Package checks holds the instructor's checks that run the lessons as a
// whole: the reference solutions, the stubs, lint, the demo, the README
// commands against a live server, load and abuse, and `make check`, which
// runs every check and prints one summary.
package checks
