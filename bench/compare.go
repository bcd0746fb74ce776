package main

import (
	"fmt"
	"slices"
	"time"
)

// comparison is a measured side against its baseline, each run several
// times in turn (A, B, A, B, ...) so that both see the same machine.
type comparison struct {
	what              string
	measured, against []result
}

// compare runs measure and baseline alternately, runs times each.
func compare(what string, runs int, measure, baseline func() result) comparison {
	c := comparison{what: what}
	for range runs {
		c.measured = append(c.measured, measure())
		c.against = append(c.against, baseline())
	}
	return c
}

// medians of a side's runs: rate, p50 and p99.
func medians(rs []result) (rate float64, p50, p99 time.Duration) {
	var rates []float64
	var p50s, p99s []time.Duration
	for _, r := range rs {
		rates = append(rates, r.rate())
		p50s = append(p50s, r.percentile(0.5))
		p99s = append(p99s, r.percentile(0.99))
	}
	slices.Sort(rates)
	slices.Sort(p50s)
	slices.Sort(p99s)
	return rates[len(rates)/2], p50s[len(p50s)/2], p99s[len(p99s)/2]
}

// row prints the comparison as a table row: medians of both sides, the
// throughput ratio and the p99 ratio.
func (c comparison) row() {
	mr, m50, m99 := medians(c.measured)
	br, b50, b99 := medians(c.against)
	failures := 0
	for _, r := range append(slices.Clone(c.measured), c.against...) {
		failures += r.failures
	}
	fmt.Printf("| %s | %.0f/s, p50 %s, p99 %s | %.0f/s, p50 %s, p99 %s | **%.2f×** | %.2f× | %d |\n", c.what,
		mr, round(m50), round(m99), br, round(b50), round(b99), mr/br, float64(m99)/float64(b99), failures)
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// timedRuns alternates two timed operations, runs times each, and returns
// the median duration of each.
func timedRuns(runs int, measure, baseline func()) (m, b time.Duration) {
	var ms, bs []time.Duration
	for range runs {
		ms = append(ms, timeIt(measure))
		bs = append(bs, timeIt(baseline))
	}
	slices.Sort(ms)
	slices.Sort(bs)
	return ms[len(ms)/2], bs[len(bs)/2]
}
