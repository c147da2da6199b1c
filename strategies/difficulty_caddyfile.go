package strategies

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	difficulty {
//		weights <dimension> <weight> [<dimension> <weight>...]
//		long_tokens <tokens>
//		history_tokens <tokens>
//		system_tokens <tokens>
//		cues <dimension> <cue...>
//		add_cues <dimension> <cue...>
//		tier <min_score> <model...>
//	}
//
// Dimensions are length, reasoning, structure, domain and context; cue
// dimensions are reasoning, structure and domain. cues replaces the
// built-in cues of a dimension and add_cues extends them; both may be
// repeated. Each tier line adds a tier; at least one is required.
func (s *Difficulty) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "weights":
			args := d.RemainingArgs()
			if len(args) == 0 || len(args)%2 != 0 {
				return d.ArgErr()
			}
			if s.Weights == nil {
				s.Weights = make(map[string]float64, len(args)/2)
			}
			for i := 0; i < len(args); i += 2 {
				v, err := strconv.ParseFloat(args[i+1], 64)
				if err != nil {
					return d.Errf("invalid weight value '%s' for %s: want a number", args[i+1], args[i])
				}
				s.Weights[args[i]] = v
			}
		case "long_tokens":
			if err := intArg(d, &s.LongTokens); err != nil {
				return err
			}
		case "history_tokens":
			if err := intArg(d, &s.HistoryTokens); err != nil {
				return err
			}
		case "system_tokens":
			if err := intArg(d, &s.SystemTokens); err != nil {
				return err
			}
		case "cues", "add_cues":
			name := d.Val()
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			target := &s.AddCues
			if name == "cues" {
				target = &s.Cues
			}
			if *target == nil {
				*target = make(map[string][]string)
			}
			(*target)[args[0]] = append((*target)[args[0]], args[1:]...)
		case "tier":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			v, err := strconv.ParseFloat(args[0], 64)
			if err != nil {
				return d.Errf("invalid tier score '%s': want a number", args[0])
			}
			s.Tiers = append(s.Tiers, DifficultyTier{Min: v, Models: args[1:]})
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}
