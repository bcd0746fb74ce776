package registryauth

import "testing"

// TestCounterChildren: every counter has at most the two labels a
// labelValues holds, and count finds a child made in advance for every
// value combination, so counting never hashes label values.
func TestCounterChildren(t *testing.T) {
	createMetrics()
	for _, c := range counters {
		if len(c.labels) > len(labelValues{}) || len(c.labels) != len(c.values) {
			t.Fatalf("%s: %d labels, %d value sets; at most %d labels", c.name, len(c.labels), len(c.values), len(labelValues{}))
		}
		for _, vals := range combinations(c.values) {
			if _, ok := children[*c.dst][labelsOf(vals)]; !ok {
				t.Errorf("%s: no child for %v", c.name, vals)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { count(metrics.logins, "cached", sourcePassword) }); n != 0 {
		t.Errorf("counting a login allocates %v times", n)
	}
}
