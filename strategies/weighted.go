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
	var stack [stackKeys]sortKey
	keys, kb := keysFor(&stack, len(cands))
	for i := range cands {
		k := math.Inf(1)
		if uniform {
			k = rand.ExpFloat64()
		} else if w := cands[i].Weight; w > 0 { // NaN is not > 0
			// A tiny weight must not overflow into the +Inf of the
			// candidates that cannot be drawn.
			k = min(rand.ExpFloat64()/w, math.MaxFloat64)
		}
		keys[i] = sortKey{primary: k, pos: i}
	}
	orderByKeys(cands, keys)
	releaseKeys(kb)
	return Decision{Reason: "weighted"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. The
// weights are the targets' own. Syntax:
//
//	weighted
func (w *Weighted) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// Interface guards
var (
	_ Strategy              = (*Weighted)(nil)
	_ caddyfile.Unmarshaler = (*Weighted)(nil)
)
