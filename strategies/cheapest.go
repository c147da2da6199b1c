package strategies

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Cheapest{})
}

// Cheapest is a strategy that puts the candidates with the lowest
// estimated cost of this request first: its prompt tokens at the input
// price plus the expected output (the client's max_tokens, capped at
// ExpectedOutput) at the output price. Candidates without a price go
// after all priced ones; an unknown price is never taken as free. Ties
// go to the higher quality, then to the configured order.
type Cheapest struct {
	// ExpectedOutput is the number of output tokens assumed for the
	// estimate; the client's max_tokens lowers it. Default: 256.
	ExpectedOutput int `json:"expected_output,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Cheapest) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".cheapest",
		New: func() caddy.Module { return new(Cheapest) },
	}
}

// Provision sets up c's defaults.
func (c *Cheapest) Provision(_ caddy.Context) error {
	if c.ExpectedOutput == 0 {
		c.ExpectedOutput = DefaultExpectedOutput
	}
	return nil
}

// Validate ensures that c's configuration is valid.
func (c *Cheapest) Validate() error {
	return checkNotNegative("cheapest: expected_output", c.ExpectedOutput)
}

// Select sorts cands by ascending estimated cost, unpriced last, then
// by descending quality, stable.
func (c Cheapest) Select(req *Request, cands []Candidate) Decision {
	out := orDefault(c.ExpectedOutput, DefaultExpectedOutput)
	sortBy(cands, func(cand *Candidate) (float64, float64) {
		return costKey(req, cand, out), -knownQuality(cand)
	})
	return Decision{Reason: "cheapest"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	cheapest {
//		expected_output <tokens>
//	}
func (c *Cheapest) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "expected_output":
			if err := intArg(d, &c.ExpectedOutput); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Strategy              = (*Cheapest)(nil)
	_ caddy.Provisioner     = (*Cheapest)(nil)
	_ caddy.Validator       = (*Cheapest)(nil)
	_ caddyfile.Unmarshaler = (*Cheapest)(nil)
)
