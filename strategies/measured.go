package strategies

import (
	"math"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The strategies that rank by a live measurement, lowest_latency and
// highest_throughput, are one implementation: measured, which a metric
// parameterises. Both modules convert their config to measured (the
// fields are the same), so each keeps its own type and documentation.

// metric is what a measured strategy ranks by.
type metric uint8

const (
	// byLatency ranks by latency, lowest first: the time to first token
	// for streams, the total time otherwise.
	byLatency metric = iota
	// byThroughput ranks by output tokens per second, highest first.
	byThroughput
)

// metricReasons are the reasons of each metric's strategy: its module
// name, which also prefixes its errors, and its reason when exploring.
var metricReasons = [...]struct{ name, explored string }{
	byLatency:    {"lowest_latency", "lowest_latency explore"},
	byThroughput: {"highest_throughput", "highest_throughput explore"},
}

// name is the module name of the strategy that ranks by by.
func (by metric) name() string { return metricReasons[by].name }

// of returns the measurement of c for req, and its sort key, which is
// lowest for the best candidate.
func (by metric) of(req *Request, c *Candidate) (v, key float64) {
	if by == byThroughput {
		v = c.Stats.TokensPerSecond
		return v, -v
	}
	v = latencyOf(req, c)
	return v, v
}

// measured is the config of a measured strategy: min_samples, before
// which a candidate is cold and tried first, and explore, the chance
// that a random other candidate is put first.
type measured struct {
	MinSamples int
	Explore    *float64
}

// provision sets m's defaults.
func (m *measured) provision() {
	if m.MinSamples == 0 {
		m.MinSamples = DefaultMinSamples
	}
	if m.Explore == nil {
		v := DefaultExplore
		m.Explore = &v
	}
}

// validate checks m, the config of the strategy that ranks by by.
func (m *measured) validate(by metric) error {
	if err := checkNotNegative(by.name()+": min_samples", m.MinSamples); err != nil {
		return err
	}
	return checkRange(by.name()+": explore", m.Explore, 1)
}

// rank sorts cands cold first (in the order they came in), then by the
// metric, best first, stable, and may then explore.
func (m measured) rank(req *Request, cands []Candidate, by metric) Decision {
	reasons := &metricReasons[by]
	if len(cands) < 2 {
		return Decision{Reason: reasons.name}
	}
	minSamples := int64(orDefault(m.MinSamples, DefaultMinSamples))
	sortBy(cands, func(c *Candidate) (float64, float64) {
		v, key := by.of(req, c)
		if cold(v, c.Stats.Samples, minSamples) {
			return math.Inf(-1), 0 // cold: first
		}
		return key, 0
	})
	if explore(cands, probability(m.Explore, DefaultExplore)) {
		return Decision{Reason: reasons.explored}
	}
	return Decision{Reason: reasons.name}
}

// unmarshalCaddyfile reads a measured strategy's Caddyfile block:
//
//	<name> {
//		min_samples <n>
//		explore     <probability>
//	}
func (m *measured) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "min_samples":
			err = intArg(d, &m.MinSamples)
		case "explore":
			err = floatArg(d, &m.Explore)
		default:
			err = d.Errf("unrecognized subdirective: %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
