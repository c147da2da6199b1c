package strategies

import (
	"math"
	"math/rand/v2"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Weighted{})
}

// Weighted is a strategy that orders the candidates at random, without
// replacement, in proportion to their weights: a candidate is first with
// probability weight/total, the next one is drawn the same way from the
// rest, and so on. Candidates whose weight is not positive are never
// first unless all are; they go last, in the configured order. When no
// weight is positive, the order is uniformly random.
type Weighted struct{}

// CaddyModule returns the Caddy module information.
func (Weighted) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".weighted",
		New: func() caddy.Module { return new(Weighted) },
	}
}

// Select orders cands by Efraimidis–Spirakis keys: each candidate draws
// E/weight with E exponentially distributed (the log of the classic
// u^(1/w) key), and the smallest key comes first. Candidates that cannot
// be drawn get +Inf, which sorts them last in the configured order.
func (Weighted) Select(_ *Request, cands []Candidate) Decision {
	if len(cands) < 2 {
		return Decision{Reason: "weighted"}
	}
	uniform := true
	for i := range cands {
		if cands[i].Weight > 0 {
			uniform = false
			break
		}
	}
	sortBy(cands, func(c *Candidate) (float64, float64) {
		switch {
		case uniform:
			return rand.ExpFloat64(), 0
		case c.Weight > 0: // NaN is not > 0
			// A tiny weight must not overflow into the +Inf of the
			// candidates that cannot be drawn.
			return min(rand.ExpFloat64()/c.Weight, math.MaxFloat64), 0
		}
		return math.Inf(1), 0
	})
	return Decision{Reason: "weighted"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. The
// weights are the targets' own. Syntax:
//
//	weighted
func (w *Weighted) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// PromptBlind implements PromptBlind.
func (Weighted) PromptBlind() {}

// Interface guards
var (
	_ Strategy              = (*Weighted)(nil)
	_ PromptBlind           = (*Weighted)(nil)
	_ caddyfile.Unmarshaler = (*Weighted)(nil)
)
