// Package learner is the learner's loop: `make progress`, `make watch`,
// `make hint` and `make solution`. It runs the learner's own code, never
// the reference, and prints where each failure comes from and what it
// usually means.
package learner
