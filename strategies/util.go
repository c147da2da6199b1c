package strategies

import (
	"math"
)

// Defaults shared by the built-in strategies.
const (
	// DefaultMinSamples is how many measured attempts a candidate needs
	// before its measurements are trusted; until then it is cold.
	DefaultMinSamples = 3
	// DefaultExplore is the probability that a measured strategy puts
	// a random candidate first.
	DefaultExplore = 0.05
	// DefaultExpectedOutput is the number of output tokens assumed for
	// cost estimates when the client sets no max_tokens.
	DefaultExpectedOutput = 256
)

// finitePositive reports whether v is a usable measurement: > 0 and
// neither NaN nor infinite.
func finitePositive(v float64) bool {
	return v > 0 && !math.IsInf(v, 1)
}

// cold reports whether a measurement v taken over samples attempts is
// too thin to rank by: fewer than minSamples samples, or no (or a
// nonsensical) value.
func cold(v float64, samples, minSamples int64) bool {
	return samples < minSamples || !finitePositive(v)
}

// latencyOf is the latency that matters for req on c: the time to first
// token for streams, the total time otherwise.
func latencyOf(req *Request, c *Candidate) float64 {
	if req != nil && req.Stream {
		return c.Stats.TTFTMs
	}
	return c.Stats.LatencyMs
}

// knownQuality is c's quality score, or 0 when it is unknown (0, negative
// or NaN).
func knownQuality(c *Candidate) float64 {
	if q := c.Quality; q > 0 {
		return q
	}
	return 0
}

// priced returns the estimated cost of req on c and whether it is
// known: an unpriced candidate, or one whose prices give no finite cost,
// has no known cost (which is never read as free).
func priced(req *Request, c *Candidate, expectedOutput int) (float64, bool) {
	if !c.Priced {
		return 0, false
	}
	v := Cost(req, c, expectedOutput)
	if !(math.Abs(v) <= math.MaxFloat64) { // NaN or infinite
		return 0, false
	}
	return v, true
}

// costKey is the estimated cost of req on c as a sort key: +Inf when
// unknown, so unpriced candidates go after all priced ones.
func costKey(req *Request, c *Candidate, expectedOutput int) float64 {
	if v, ok := priced(req, c, expectedOutput); ok {
		return v
	}
	return math.Inf(1)
}

// orDefault returns v, or def when v is 0 (unset).
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// probability returns *p, or def when p is nil (unset).
func probability(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}
