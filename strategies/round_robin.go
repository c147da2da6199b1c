package strategies

import (
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(new(RoundRobin))
}

// RoundRobin is a strategy that rotates the candidates by one for each
// request, so consecutive requests start at consecutive candidates; the
// others follow in their cyclic configured order as fallbacks.
type RoundRobin struct {
	next atomic.Uint64
}

// CaddyModule returns the Caddy module information.
func (*RoundRobin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".round_robin",
		New: func() caddy.Module { return new(RoundRobin) },
	}
}

// Select rotates cands left by the request count modulo len(cands).
func (r *RoundRobin) Select(_ *Request, cands []Candidate) Decision {
	if n := len(cands); n > 1 {
		rotateLeft(cands, int((r.next.Add(1)-1)%uint64(n)))
	}
	return Decision{Reason: "round_robin"}
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	round_robin
func (r *RoundRobin) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// PromptBlind implements PromptBlind.
func (*RoundRobin) PromptBlind() {}

// Interface guards
var (
	_ Strategy              = (*RoundRobin)(nil)
	_ PromptBlind           = (*RoundRobin)(nil)
	_ caddyfile.Unmarshaler = (*RoundRobin)(nil)
)
