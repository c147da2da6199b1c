package strategies

import (
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
	(*measured)(h).provision()
	return nil
}

// Validate ensures that h's configuration is valid.
func (h *HighestThroughput) Validate() error {
	return (*measured)(h).validate(byThroughput)
}

// Select sorts cands cold first, then by descending tokens per
// second, stable, and may then explore.
func (h HighestThroughput) Select(req *Request, cands []Candidate) Decision {
	return measured(h).rank(req, cands, byThroughput)
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	highest_throughput {
//		min_samples <n>
//		explore     <probability>
//	}
func (h *HighestThroughput) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return (*measured)(h).unmarshalCaddyfile(d)
}

// PromptBlind implements PromptBlind.
func (HighestThroughput) PromptBlind() {}

// Interface guards
var (
	_ Strategy              = (*HighestThroughput)(nil)
	_ PromptBlind           = (*HighestThroughput)(nil)
	_ caddy.Provisioner     = (*HighestThroughput)(nil)
	_ caddy.Validator       = (*HighestThroughput)(nil)
	_ caddyfile.Unmarshaler = (*HighestThroughput)(nil)
)
