package strategies

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Difficulty{})
}

// Difficulty is a strategy that scores how hard a request is, from 0
// (trivial) to 1 (hard), and puts the models of the matching tier first:
// small models for easy prompts, large ones for hard prompts.
//
// The score is the weighted mean of five dimension scores, each in 0..1:
//
//   - length: the prompt's tokens t, on the smooth S-curve
//     r²/(1+r²), r = t·√19/long_tokens: 0.05 at 5% of long_tokens, 0.5
//     at 23%, 0.95 at long_tokens, and still rising beyond, so that
//     longer prompts keep scoring higher;
//   - reasoning: reasoning cues in the last user message (prove, derive,
//     step by step, why, analyze, 证明, 推导, 为什么, …);
//   - structure: structure cues (must, at least, JSON, code fences,
//     tables, 要求, 格式, 必须, …), numbered or bulleted requirements,
//     tools and JSON mode;
//   - domain: specialist cues (math symbols and LaTeX, legal, medical,
//     finance, algorithms, 数学, 法律, 医学, 金融, 算法, …), and numbers
//     (runs of digits, "3.14" and "1,000" one each): every three count
//     as one cue, so quantitative tasks score higher;
//   - context: the size of the earlier turns and of the system prompt,
//     in tokens (estimated from their share of the conversation).
//
// The cue dimensions read the last user message (the whole conversation
// when there is none): the task is stated there, and a long system
// prompt or history counts through context instead. A cue dimension
// counts the distinct cues found (each cue once, however often it
// occurs; numbers add fractions of a cue) and maps n of them to
// 1-exp(-n/1.5): 0.49 for one, 0.74 for two, 0.86 for three. Cues are
// matched case-insensitively; one that starts (ends) with an ASCII letter or digit must start (end) at a
// word boundary, and one written with a trailing * matches any ending
// ("optimiz*" matches optimize and optimization). Chinese cues match
// anywhere.
//
// The tiers map the score to models: the tier with the highest minimum
// score at or below the score wins, and its models go first, in the
// tier's order (the other candidates follow as fallbacks). When none of
// that tier's models is a candidate, the next lower tier is tried, then
// the next higher ones. The decision reads "difficulty=0.62 tier=2" (the
// index of the tier in ascending order of minimum score), or
// "difficulty=0.62 tier=none" when no tier has a candidate.
type Difficulty struct {
	// Weights of the dimensions, by name: length, reasoning, structure,
	// domain, context. Unset dimensions keep their defaults: length 0.5,
	// reasoning 0.1, structure 0.1, domain 0.25, context 0.05 (chosen on
	// training data: see BENCHMARKS.md, "Learning routers"). The score
	// is the weighted mean, so it stays in 0..1 whatever the sum; a
	// weight of 0 turns a dimension off.
	Weights map[string]float64 `json:"weights,omitempty"`

	// Prompt tokens at which the length score reaches 0.95 (0.5 at
	// 23% of it). Default: 1000.
	LongTokens int `json:"long_tokens,omitempty"`

	// Tokens of earlier turns (the conversation before the last user
	// message, without the system prompt) at which the context score
	// reaches 0.95 when there is no system prompt. Default: 4000.
	HistoryTokens int `json:"history_tokens,omitempty"`

	// Tokens of system prompt at which the context score reaches 0.95
	// when there are no earlier turns. Default: 2000.
	SystemTokens int `json:"system_tokens,omitempty"`

	// Cues that replace the built-in ones of a cue dimension (reasoning,
	// structure or domain), e.g. {"domain": ["kubernetes", "helm"]}.
	Cues map[string][]string `json:"cues,omitempty"`

	// Cues added to those of a cue dimension (the built-in ones, or the
	// ones given in cues).
	AddCues map[string][]string `json:"add_cues,omitempty"`

	// The tiers, each a minimum score and the models to prefer from that
	// score on. At least one is required.
	Tiers []DifficultyTier `json:"tiers,omitempty"`

	weights [numDims]float64 // normalized to sum 1
	tiers   []DifficultyTier // by ascending Min
	matcher *cueMatcher
}

// DifficultyTier is one tier of the difficulty strategy.
type DifficultyTier struct {
	// The lowest score (0..1) that selects this tier.
	Min float64 `json:"min"`
	// The models to prefer, in order.
	Models []string `json:"models"`
}

// The dimensions, in the order of dimNames.
const (
	dimLength = iota
	dimReasoning
	dimStructure
	dimDomain
	dimContext
	numDims
)

var dimNames = [numDims]string{"length", "reasoning", "structure", "domain", "context"}

var defaultDimWeights = [numDims]float64{0.5, 0.1, 0.1, 0.25, 0.05}

// Defaults of the difficulty strategy.
const (
	DefaultLongTokens    = 1000
	DefaultHistoryTokens = 4000
	DefaultSystemTokens  = 2000
)

// CaddyModule returns the Caddy module information.
func (Difficulty) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".difficulty",
		New: func() caddy.Module { return new(Difficulty) },
	}
}

// Provision sets up s: the defaults, the weights, the sorted tiers and
// the cue matcher. It validates s first: values that Validate rejects
// cannot be set up, and Caddy validates a module only after
// provisioning it.
func (s *Difficulty) Provision(_ caddy.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.LongTokens == 0 {
		s.LongTokens = DefaultLongTokens
	}
	if s.HistoryTokens == 0 {
		s.HistoryTokens = DefaultHistoryTokens
	}
	if s.SystemTokens == 0 {
		s.SystemTokens = DefaultSystemTokens
	}
	w, sum := s.dimWeights()
	for i := range w {
		w[i] /= sum
	}
	s.weights = w

	s.tiers = slices.Clone(s.Tiers)
	slices.SortStableFunc(s.tiers, func(a, b DifficultyTier) int { return cmp.Compare(a.Min, b.Min) })

	var err error
	if len(s.Cues) == 0 && len(s.AddCues) == 0 {
		s.matcher, err = defaultMatcher()
	} else {
		s.matcher, err = newCueMatcher(s.cueLists())
	}
	if err != nil {
		return fmt.Errorf("difficulty: cues: %v", err)
	}
	return nil
}

// dimWeights returns the weight of each dimension, the defaults
// overridden by Weights, and their sum.
func (s *Difficulty) dimWeights() (w [numDims]float64, sum float64) {
	w = defaultDimWeights
	for name, v := range s.Weights {
		if i := slices.Index(dimNames[:], name); i >= 0 {
			w[i] = v
		}
	}
	for _, v := range w {
		sum += v
	}
	return w, sum
}

// Validate ensures that s's configuration is valid.
func (s *Difficulty) Validate() error {
	for _, name := range slices.Sorted(maps.Keys(s.Weights)) {
		if !slices.Contains(dimNames[:], name) {
			return fmt.Errorf("difficulty: weights: unknown dimension %q (want one of %s)", name, strings.Join(dimNames[:], ", "))
		}
		v := s.Weights[name]
		if err := checkWeight("difficulty: weights: "+name, &v); err != nil {
			return err
		}
	}
	if _, sum := s.dimWeights(); sum <= 0 {
		return errors.New("difficulty: weights: at least one weight must be positive")
	}
	for _, kv := range []struct {
		name string
		v    int
	}{{"long_tokens", s.LongTokens}, {"history_tokens", s.HistoryTokens}, {"system_tokens", s.SystemTokens}} {
		if err := checkNotNegative("difficulty: "+kv.name, kv.v); err != nil {
			return err
		}
	}
	for _, cues := range []struct {
		name  string
		lists map[string][]string
	}{{"cues", s.Cues}, {"add_cues", s.AddCues}} {
		for _, dim := range slices.Sorted(maps.Keys(cues.lists)) {
			if err := checkCueDimension(dim); err != nil {
				return fmt.Errorf("difficulty: %s: %v", cues.name, err)
			}
			for _, c := range cues.lists[dim] {
				if _, err := parseCue(c); err != nil {
					return fmt.Errorf("difficulty: %s: %s cue %q: %v", cues.name, dim, c, err)
				}
			}
		}
	}
	if len(s.Cues) > 0 || len(s.AddCues) > 0 {
		// The cues are valid; this counts them.
		if _, _, err := cuePatterns(s.cueLists()); err != nil {
			return fmt.Errorf("difficulty: cues: %v", err)
		}
	}
	if len(s.Tiers) == 0 {
		return errors.New("difficulty: at least one tier is required")
	}
	seen := make(map[float64]bool, len(s.Tiers))
	for i, t := range s.Tiers {
		if err := checkRange(fmt.Sprintf("difficulty: tier %d: min", i), &t.Min, 1); err != nil {
			return err
		}
		if seen[t.Min] {
			return fmt.Errorf("difficulty: tier %d: another tier has min %g", i, t.Min)
		}
		seen[t.Min] = true
		if len(t.Models) == 0 {
			return fmt.Errorf("difficulty: tier %d: no models", i)
		}
		if slices.Contains(t.Models, "") {
			return fmt.Errorf("difficulty: tier %d: empty model name", i)
		}
	}
	return nil
}

// Select scores req and puts the models of the matching tier first.
func (s *Difficulty) Select(req *Request, cands []Candidate) Decision {
	sc := s.Assess(req)
	tier := s.preferTier(cands, sc.Score)
	b := make([]byte, 0, 32)
	b = append(b, "difficulty="...)
	b = strconv.AppendFloat(b, sc.Score, 'f', 2, 64)
	b = append(b, " tier="...)
	if tier < 0 {
		b = append(b, "none"...)
	} else {
		b = strconv.AppendInt(b, int64(tier), 10)
	}
	return Decision{Reason: string(b)}
}

// preferTier moves the models of the tier for score to the front of
// cands and returns the tier's index, or -1 if no tier has a candidate.
func (s *Difficulty) preferTier(cands []Candidate, score float64) int {
	tiers := s.tiers
	// The highest tier whose minimum the score reaches.
	at := -1
	for i, t := range tiers {
		if t.Min <= score {
			at = i
		}
	}
	for i := at; i >= 0; i-- {
		if Prefer(cands, tiers[i].Models) > 0 {
			return i
		}
	}
	for i := at + 1; i < len(tiers); i++ {
		if Prefer(cands, tiers[i].Models) > 0 {
			return i
		}
	}
	return -1
}

// Interface guards
var (
	_ Strategy              = (*Difficulty)(nil)
	_ caddy.Provisioner     = (*Difficulty)(nil)
	_ caddy.Validator       = (*Difficulty)(nil)
	_ caddyfile.Unmarshaler = (*Difficulty)(nil)
)
