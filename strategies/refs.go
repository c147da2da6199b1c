package strategies

import (
	"fmt"
	"maps"
	"slices"
)

// This file holds the Refs of the strategies whose options name models
// or set body parameters: what the handler's Validate checks against the
// registry (see Referrer).

// Refs returns the models of each tier, in the order of the config.
func (s *Difficulty) Refs() []Ref {
	refs := make([]Ref, len(s.Tiers))
	for i, t := range s.Tiers {
		refs[i] = Ref{Option: fmt.Sprintf("difficulty: tier %d", i), Models: t.Models}
	}
	return refs
}

// Refs returns the models and parameter paths of each rule and of the
// default.
func (r *Rules) Refs() []Ref {
	refs := make([]Ref, 0, len(r.Rules)+1)
	for _, rl := range r.Rules {
		if rl != nil {
			refs = append(refs, Ref{Option: "rule " + rl.Name, Models: rl.Models, Params: slices.Sorted(maps.Keys(rl.Params))})
		}
	}
	if d := r.Default; d != nil {
		refs = append(refs, Ref{Option: "rules: default", Models: d.Models, Params: slices.Sorted(maps.Keys(d.Params))})
	}
	return refs
}

// Refs returns the premium models.
func (s *Classifier) Refs() []Ref {
	if len(s.Premium) == 0 {
		return nil
	}
	return []Ref{{Option: "classifier: premium", Models: s.Premium}}
}

// Interface guards
var (
	_ Referrer = (*Difficulty)(nil)
	_ Referrer = (*Rules)(nil)
	_ Referrer = (*Classifier)(nil)
)
