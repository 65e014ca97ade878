// Package mutants runs each day's tests against systematic and realistic
// mutants of its reference solution and fails when too few are killed.
package mutants
