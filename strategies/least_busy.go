package strategies

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(LeastBusy{})
}

// LeastBusy is a strategy that puts the candidates with the fewest
// requests in flight first; ties keep the configured order.
type LeastBusy struct{}

// CaddyModule returns the Caddy module information.
func (LeastBusy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".least_busy",
		New: func() caddy.Module { return new(LeastBusy) },
	}
}

// Select sorts cands by Stats.InFlight, ascending and stable.
func (LeastBusy) Select(_ *Request, cands []Candidate) Decision {
	sortBy(cands, func(c *Candidate) (float64, float64) {
		return float64(c.Stats.InFlight), 0
	})
	return Decision{Reason: "least_busy"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	least_busy
func (l *LeastBusy) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// PromptBlind implements PromptBlind.
func (LeastBusy) PromptBlind() {}

// Interface guards
var (
	_ Strategy              = (*LeastBusy)(nil)
	_ PromptBlind           = (*LeastBusy)(nil)
	_ caddyfile.Unmarshaler = (*LeastBusy)(nil)
)
