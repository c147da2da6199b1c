package strategies

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(BestQuality{})
}

// BestQuality is a strategy that puts the candidates with the highest
// configured quality score first; those whose quality is unknown go
// last. Ties go to the lower estimated cost of the request (unpriced
// after priced, with the default expected output of 256 tokens), then
// to the configured order.
type BestQuality struct{}

// CaddyModule returns the Caddy module information.
func (BestQuality) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".best_quality",
		New: func() caddy.Module { return new(BestQuality) },
	}
}

// Select sorts cands by descending quality, unknown last, then by
// ascending cost, stable.
func (BestQuality) Select(req *Request, cands []Candidate) Decision {
	sortBy(cands, func(c *Candidate) (float64, float64) {
		// unknown quality (0) after all known
		return -knownQuality(c), costKey(req, c, DefaultExpectedOutput)
	})
	return Decision{Reason: "best_quality"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	best_quality
func (b *BestQuality) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// Interface guards
var (
	_ Strategy              = (*BestQuality)(nil)
	_ caddyfile.Unmarshaler = (*BestQuality)(nil)
)
