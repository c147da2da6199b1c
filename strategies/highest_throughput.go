package strategies

import (
	"math"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(HighestThroughput{})
}

// HighestThroughput is a strategy that puts the candidates that stream
// the most output tokens per second first. Cold candidates, with fewer
// than MinSamples measured attempts or no measurement yet, are explored
// rather than starved: they go first (optimistically, in the configured
// order) until they are measured. In addition, with probability Explore
// a random other candidate is moved to the front, so measurements of the
// slower ones stay fresh.
type HighestThroughput struct {
	// MinSamples is how many measured attempts a candidate needs before
	// its throughput is trusted. Default: 3.
	MinSamples int `json:"min_samples,omitempty"`

	// Explore is the probability, from 0 to 1, that a random candidate
	// other than the best is put first. Default: 0.05; 0 disables it.
	Explore *float64 `json:"explore,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (HighestThroughput) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".highest_throughput",
		New: func() caddy.Module { return new(HighestThroughput) },
	}
}

// Provision sets up h's defaults.
func (h *HighestThroughput) Provision(_ caddy.Context) error {
	provisionExploration(&h.MinSamples, &h.Explore)
	return nil
}

// Validate ensures that h's configuration is valid.
func (h *HighestThroughput) Validate() error {
	return validateExploration("highest_throughput", h.MinSamples, h.Explore)
}

// Select sorts cands cold first, then by descending tokens per second,
// stable, and may then explore.
func (h HighestThroughput) Select(_ *Request, cands []Candidate) Decision {
	if len(cands) < 2 {
		return Decision{Reason: "highest_throughput"}
	}
	minSamples := int64(orDefault(h.MinSamples, DefaultMinSamples))
	sortBy(cands, func(c *Candidate) (float64, float64) {
		if v := c.Stats.TokensPerSecond; !cold(v, c.Stats.Samples, minSamples) {
			return -v, 0
		}
		return math.Inf(-1), 0 // cold: first
	})
	if explore(cands, probability(h.Explore, DefaultExplore)) {
		return Decision{Reason: "highest_throughput explore"}
	}
	return Decision{Reason: "highest_throughput"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	highest_throughput {
//		min_samples <n>
//		explore     <probability>
//	}
func (h *HighestThroughput) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalExploration(d, &h.MinSamples, &h.Explore)
}

// Interface guards
var (
	_ Strategy              = (*HighestThroughput)(nil)
	_ caddy.Provisioner     = (*HighestThroughput)(nil)
	_ caddy.Validator       = (*HighestThroughput)(nil)
	_ caddyfile.Unmarshaler = (*HighestThroughput)(nil)
)
