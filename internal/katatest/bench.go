package katatest

import (
	"slices"
	"testing"
)

// Median returns the median of xs, the mean of the two middle figures of
// an even count. It sorts xs.
func Median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// ReportPairs reports, for a benchmark that alternates its subject with a
// peer or ceiling, the median of the pairs' figures as name and their
// range as name-min and name-max.
func ReportPairs(b *testing.B, name string, figures []float64) {
	b.ReportMetric(Median(figures), name)
	b.ReportMetric(figures[0], name+"-min") // sorted by Median
	b.ReportMetric(figures[len(figures)-1], name+"-max")
}
