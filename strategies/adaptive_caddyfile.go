package strategies

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	adaptive {
//		policy thompson|ucb
//		cost_weight <λ>
//		context difficulty|none
//		buckets <n>
//		prior_weight <observations>
//		window <observations>
//		fail_weight <weight>
//		slow_after <duration>
//		state_key <name>
//		seed <n>
//		expected_output <tokens>
//	}
func (a *Adaptive) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "cost_weight":
			err = floatArg(d, &a.CostWeight)
		case "prior_weight":
			err = floatArg(d, &a.PriorWeight)
		case "fail_weight":
			err = floatArg(d, &a.FailWeight)
		case "window":
			var v *float64
			if err = floatArg(d, &v); err == nil {
				a.Window = *v
			}
		case "policy":
			if !d.AllArgs(&a.Policy) {
				return d.ArgErr()
			}
		case "context":
			if !d.AllArgs(&a.Context) {
				return d.ArgErr()
			}
		case "state_key":
			if !d.AllArgs(&a.StateKey) {
				return d.ArgErr()
			}
		case "buckets":
			err = intArg(d, &a.Buckets)
		case "expected_output":
			err = intArg(d, &a.ExpectedOutput)
		case "seed":
			var n int
			if err = intArg(d, &n); err == nil {
				a.Seed = int64(n)
			}
		case "slow_after":
			var arg string
			if !d.AllArgs(&arg) {
				return d.ArgErr()
			}
			v, perr := caddy.ParseDuration(arg)
			if perr != nil {
				return d.Errf("invalid slow_after value '%s': %v", arg, perr)
			}
			a.SlowAfter = caddy.Duration(v)
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Adaptive)(nil)
