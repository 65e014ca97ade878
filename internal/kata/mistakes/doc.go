// Package mistakes proves the planted mistakes of antipatterns.json: each
// one is applied to the reference and must make its named tests fail with
// its symptom. It also writes the README tables made from them and from
// the hints, and adds a planted mistake from an edited copy of the
// reference (`plant`).
package mistakes
