package strategies

import (
	"fmt"
	"math"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Balanced{})
}

// Default weights of Balanced.
const (
	DefaultQualityWeight = 0.5
	DefaultCostWeight    = 0.3
	DefaultLatencyWeight = 0.2
)

// Balanced is a strategy that weighs quality against cost and latency,
// and the default of the `auto` route. Each candidate scores
//
//	quality_weight·quality − cost_weight·cost − latency_weight·latency
//
// where quality is the configured score (0..1; 0.5 when unknown), and
// cost (the estimated cost of this request, as for cheapest) and latency
// (as for lowest_latency) are scaled to 0..1 between the lowest and the
// highest among this request's candidates. An unpriced candidate counts
// as the most expensive (1); a cold one, with fewer than MinSamples
// measured attempts, as of middling latency (0.5). The highest score
// comes first; ties keep the configured order.
type Balanced struct {
	// QualityWeight is the weight of quality, at least 0. Default: 0.5.
	QualityWeight *float64 `json:"quality_weight,omitempty"`

	// CostWeight is the weight of cost, at least 0. Default: 0.3.
	CostWeight *float64 `json:"cost_weight,omitempty"`

	// LatencyWeight is the weight of latency, at least 0. Default: 0.2.
	LatencyWeight *float64 `json:"latency_weight,omitempty"`

	// ExpectedOutput is the number of output tokens assumed for the cost
	// estimate; the client's max_tokens lowers it. Default: 256.
	ExpectedOutput int `json:"expected_output,omitempty"`

	// MinSamples is how many measured attempts a candidate needs before
	// its latency is trusted. Default: 3.
	MinSamples int `json:"min_samples,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Balanced) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".balanced",
		New: func() caddy.Module { return new(Balanced) },
	}
}

// Provision sets up b's defaults.
func (b *Balanced) Provision(_ caddy.Context) error {
	for _, w := range []struct {
		p   **float64
		def float64
	}{
		{&b.QualityWeight, DefaultQualityWeight},
		{&b.CostWeight, DefaultCostWeight},
		{&b.LatencyWeight, DefaultLatencyWeight},
	} {
		if *w.p == nil {
			v := w.def
			*w.p = &v
		}
	}
	if b.ExpectedOutput == 0 {
		b.ExpectedOutput = DefaultExpectedOutput
	}
	if b.MinSamples == 0 {
		b.MinSamples = DefaultMinSamples
	}
	return nil
}

// Validate ensures that b's configuration is valid.
func (b *Balanced) Validate() error {
	for _, w := range []struct {
		name string
		p    *float64
	}{
		{"quality_weight", b.QualityWeight},
		{"cost_weight", b.CostWeight},
		{"latency_weight", b.LatencyWeight},
	} {
		if err := checkWeight("balanced: "+w.name, w.p); err != nil {
			return err
		}
	}
	wq, wc, wl := b.weights()
	if wq == 0 && wc == 0 && wl == 0 {
		return fmt.Errorf("balanced: quality_weight, cost_weight and latency_weight are all 0")
	}
	if err := checkNotNegative("balanced: expected_output", b.ExpectedOutput); err != nil {
		return err
	}
	return checkNotNegative("balanced: min_samples", b.MinSamples)
}

// weights returns the quality, cost and latency weights, defaults
// filled in.
func (b Balanced) weights() (wq, wc, wl float64) {
	return probability(b.QualityWeight, DefaultQualityWeight),
		probability(b.CostWeight, DefaultCostWeight),
		probability(b.LatencyWeight, DefaultLatencyWeight)
}

// Select scores cands and sorts them by descending score, stable: one
// pass takes the ranges for the scaling, a second scores each candidate
// once.
func (b Balanced) Select(req *Request, cands []Candidate) Decision {
	if len(cands) < 2 {
		return Decision{Reason: "balanced"}
	}
	wq, wc, wl := b.weights()
	out := orDefault(b.ExpectedOutput, DefaultExpectedOutput)
	minSamples := int64(orDefault(b.MinSamples, DefaultMinSamples))

	minCost, maxCost := math.Inf(1), math.Inf(-1)
	minLat, maxLat := math.Inf(1), math.Inf(-1)
	for i := range cands {
		c := &cands[i]
		if v, ok := priced(req, c, out); ok {
			minCost, maxCost = min(minCost, v), max(maxCost, v)
		}
		if v := latencyOf(req, c); !cold(v, c.Stats.Samples, minSamples) {
			minLat, maxLat = min(minLat, v), max(maxLat, v)
		}
	}
	costSpan, latSpan := maxCost-minCost, maxLat-minLat

	sortBy(cands, func(c *Candidate) (float64, float64) {
		q := knownQuality(c)
		if q == 0 {
			q = 0.5
		}
		q = min(q, 1)
		cn := 1.0
		if v, ok := priced(req, c, out); ok {
			cn = 0
			if costSpan > 0 {
				cn = (v - minCost) / costSpan
			}
		}
		ln := 0.5
		if v := latencyOf(req, c); !cold(v, c.Stats.Samples, minSamples) {
			ln = 0
			if latSpan > 0 {
				ln = (v - minLat) / latSpan
			}
		}
		k := -(wq*q - wc*cn - wl*ln)
		if math.IsNaN(k) { // extreme prices can overflow the cost span; NaN breaks a sort
			k = math.Inf(1)
		}
		return k, 0
	})
	return Decision{Reason: "balanced"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	balanced {
//		quality_weight  <weight>
//		cost_weight     <weight>
//		latency_weight  <weight>
//		expected_output <tokens>
//		min_samples     <n>
//	}
func (b *Balanced) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "quality_weight":
			err = floatArg(d, &b.QualityWeight)
		case "cost_weight":
			err = floatArg(d, &b.CostWeight)
		case "latency_weight":
			err = floatArg(d, &b.LatencyWeight)
		case "expected_output":
			err = intArg(d, &b.ExpectedOutput)
		case "min_samples":
			err = intArg(d, &b.MinSamples)
		default:
			err = d.Errf("unrecognized subdirective: %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ Strategy              = (*Balanced)(nil)
	_ caddy.Provisioner     = (*Balanced)(nil)
	_ caddy.Validator       = (*Balanced)(nil)
	_ caddyfile.Unmarshaler = (*Balanced)(nil)
)
