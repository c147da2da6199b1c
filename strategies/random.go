package strategies

import (
	"math/rand/v2"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Random{})
}

// Random is a strategy that shuffles the candidates uniformly, so every
// order is equally likely.
type Random struct{}

// CaddyModule returns the Caddy module information.
func (Random) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".random",
		New: func() caddy.Module { return new(Random) },
	}
}

// Select shuffles cands (Fisher–Yates).
func (Random) Select(_ *Request, cands []Candidate) Decision {
	for i := len(cands) - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		cands[i], cands[j] = cands[j], cands[i]
	}
	return Decision{Reason: "random"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	random
func (r *Random) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// PromptBlind implements PromptBlind.
func (Random) PromptBlind() {}

// Interface guards
var (
	_ Strategy              = (*Random)(nil)
	_ PromptBlind           = (*Random)(nil)
	_ caddyfile.Unmarshaler = (*Random)(nil)
)
