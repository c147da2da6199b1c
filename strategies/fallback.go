package strategies

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Fallback{})
}

// Fallback is a strategy that keeps the configured order: the first
// candidate is the primary, the others are its fallbacks in turn.
type Fallback struct{}

// CaddyModule returns the Caddy module information.
func (Fallback) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".fallback",
		New: func() caddy.Module { return new(Fallback) },
	}
}

// Select leaves cands in the order they came in, which is the
// configured order.
func (Fallback) Select(_ *Request, _ []Candidate) Decision {
	return Decision{Reason: "fallback"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	fallback
func (f *Fallback) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// PromptBlind implements PromptBlind.
func (Fallback) PromptBlind() {}

// Interface guards
var (
	_ Strategy              = (*Fallback)(nil)
	_ PromptBlind           = (*Fallback)(nil)
	_ caddyfile.Unmarshaler = (*Fallback)(nil)
)
