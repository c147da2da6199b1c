package strategies

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(LowestLatency{})
}

// LowestLatency is a strategy that puts the fastest candidates first:
// by the observed time to first token for streams, by the total request
// time otherwise. Cold candidates, with fewer than MinSamples measured
// attempts or no measurement yet, are explored rather than starved: they
// go first (optimistically, in the configured order) until they are
// measured. In addition, with probability Explore a random other
// candidate is moved to the front, so measurements of the slower ones
// stay fresh.
type LowestLatency struct {
	// MinSamples is how many measured attempts a candidate needs before
	// its latency is trusted. Default: 3.
	MinSamples int `json:"min_samples,omitempty"`

	// Explore is the probability, from 0 to 1, that a random candidate
	// other than the best is put first. Default: 0.05; 0 disables it.
	Explore *float64 `json:"explore,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (LowestLatency) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".lowest_latency",
		New: func() caddy.Module { return new(LowestLatency) },
	}
}

// Provision sets up l's defaults.
func (l *LowestLatency) Provision(_ caddy.Context) error {
	(*measured)(l).provision()
	return nil
}

// Validate ensures that l's configuration is valid.
func (l *LowestLatency) Validate() error {
	return (*measured)(l).validate(byLatency)
}

// Select sorts cands cold first, then by ascending latency, stable,
// and may then explore.
func (l LowestLatency) Select(req *Request, cands []Candidate) Decision {
	return measured(l).rank(req, cands, byLatency)
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	lowest_latency {
//		min_samples <n>
//		explore     <probability>
//	}
func (l *LowestLatency) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return (*measured)(l).unmarshalCaddyfile(d)
}

// PromptBlind implements PromptBlind.
func (LowestLatency) PromptBlind() {}

// Interface guards
var (
	_ Strategy              = (*LowestLatency)(nil)
	_ PromptBlind           = (*LowestLatency)(nil)
	_ caddy.Provisioner     = (*LowestLatency)(nil)
	_ caddy.Validator       = (*LowestLatency)(nil)
	_ caddyfile.Unmarshaler = (*LowestLatency)(nil)
)
