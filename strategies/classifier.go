package strategies

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(Classifier{})
}

// DefaultKnob is the classifier's knob when none is set.
const DefaultKnob = 0.5

// Classifier is a strategy that predicts, for each candidate, the
// probability that it answers this prompt well (a model trained offline
// by `caddy llm-route train`, see ClassifierModel), and picks by a knob
// from 0 (cheapest) to 1 (best predicted quality). Each candidate's
// utility is
//
//	predicted quality − λ(knob) · cost / highest cost among candidates
//
// where λ is the model file's price on quality for the knob (calibrated
// so that the knob is about the share of the all-premium cost spent) and
// cost is the estimated cost of the request (as for cheapest; for a
// candidate without a registry price, the model file's price per token).
// With quality_target set, the cheapest candidate whose predicted
// quality reaches it goes first instead (the best predicted when none
// does). The others follow by utility, as fallbacks.
//
// A candidate the model file does not know is predicted at its registry
// quality (0.5 when unknown). When the prediction for the pick is close
// to a coin toss (confidence |2p−1| below min_confidence), the premium
// models go first.
//
// The decision reads "classifier=0.73 knob=0.5": the predicted quality
// of the pick and the knob ("target=0.9" with quality_target), with
// " low_confidence" appended when the premium models were put first.
type Classifier struct {
	// ModelFile is the path of the model file. Required. It is read when
	// the config is loaded, so a reload picks up a new file.
	ModelFile string `json:"model_file"`

	// Knob trades cost for quality, from 0 (cheapest) to 1 (best
	// predicted quality). Default: 0.5.
	Knob *float64 `json:"knob,omitempty"`

	// QualityTarget, when set (0..1), picks the cheapest candidate whose
	// predicted quality reaches it, instead of using the knob.
	QualityTarget *float64 `json:"quality_target,omitempty"`

	// MinConfidence (0..1): below this confidence in the pick, the
	// premium models go first. Default: 0 (off).
	MinConfidence float64 `json:"min_confidence,omitempty"`

	// Premium are the models put first on low confidence. Default: the
	// candidate with the highest mean quality in the model file.
	Premium []string `json:"premium,omitempty"`

	// ExpectedOutput is the number of output tokens assumed for the cost
	// estimate; the client's max_tokens lowers it. Default: 256.
	ExpectedOutput int `json:"expected_output,omitempty"`

	model  *ClassifierModel
	lambda float64
	arms   map[string]*ClassifierArm
}

// CaddyModule returns the Caddy module information.
func (Classifier) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".classifier",
		New: func() caddy.Module { return new(Classifier) },
	}
}

// Provision validates s and loads its model file.
func (s *Classifier) Provision(_ caddy.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	m, err := LoadClassifierModel(s.ModelFile)
	if err != nil {
		return fmt.Errorf("classifier: %v", err)
	}
	s.SetModel(m)
	return nil
}

// SetModel makes s use m (already checked). Provision calls it with the
// model file's model.
func (s *Classifier) SetModel(m *ClassifierModel) {
	s.model = m
	s.lambda = m.Lambda(probability(s.Knob, DefaultKnob))
	s.arms = make(map[string]*ClassifierArm, len(m.Models))
	for i := range m.Models {
		s.arms[m.Models[i].Name] = &m.Models[i]
	}
	if s.ExpectedOutput == 0 {
		s.ExpectedOutput = DefaultExpectedOutput
	}
}

// Validate ensures that s's configuration is valid.
func (s *Classifier) Validate() error {
	if s.ModelFile == "" {
		return errors.New("classifier: model_file is required")
	}
	if err := checkRange("classifier: knob", s.Knob, 1); err != nil {
		return err
	}
	if err := checkRange("classifier: quality_target", s.QualityTarget, 1); err != nil {
		return err
	}
	mc := s.MinConfidence
	if err := checkRange("classifier: min_confidence", &mc, 1); err != nil {
		return err
	}
	if slices.Contains(s.Premium, "") {
		return errors.New("classifier: premium: empty model name")
	}
	return checkNotNegative("classifier: expected_output", s.ExpectedOutput)
}

// classifierScratch holds one Select's buffers.
type classifierScratch struct {
	x                []Feature
	pred, cost, util []float64
	order            []int
	sorted           []Candidate
}

var classifierPool = sync.Pool{New: func() any { return new(classifierScratch) }}

// Select predicts each candidate's quality and orders cands by the knob.
func (s *Classifier) Select(req *Request, cands []Candidate) Decision {
	if s.model == nil || len(cands) == 0 {
		return Decision{Reason: "classifier=none"}
	}
	sc := classifierPool.Get().(*classifierScratch)
	defer classifierPool.Put(sc)
	sc.x = ClassifierFeatures(req, s.model.Bits, sc.x[:0])
	n := len(cands)
	sc.pred, sc.cost = slices.Grow(sc.pred[:0], n)[:n], slices.Grow(sc.cost[:0], n)[:n]
	out := float64(s.ExpectedOutput)
	if req.MaxTokens > 0 && float64(req.MaxTokens) < out {
		out = float64(req.MaxTokens)
	}
	premium := -1
	shared := s.model.SharedScore(sc.x)
	for i := range cands {
		c := &cands[i]
		arm := s.arms[c.Model]
		switch {
		case arm != nil:
			sc.pred[i] = s.model.PredictShared(arm, shared, sc.x)
		case c.Quality > 0:
			sc.pred[i] = c.Quality
		default:
			sc.pred[i] = 0.5
		}
		sc.cost[i] = math.NaN()
		if v, ok := priced(req, c, int(out)); ok {
			sc.cost[i] = v
		} else if arm != nil {
			sc.cost[i] = arm.Price * (float64(req.PromptTokens) + out)
		}
		if arm != nil && (premium < 0 || s.arms[cands[premium].Model].MeanQuality < arm.MeanQuality) {
			premium = i
		}
	}
	premiumName := ""
	if premium >= 0 {
		premiumName = cands[premium].Model
	}
	sc.util = slices.Grow(sc.util[:0], n)[:n]
	pick := ClassifierUtilities(sc.pred, sc.cost, s.lambda, s.QualityTarget, sc.util)
	p := sc.pred[pick]

	// Order by utility, best first (ties: configured order).
	sc.order = sc.order[:0]
	for i := range n {
		sc.order = append(sc.order, i)
	}
	slices.SortStableFunc(sc.order, func(a, b int) int {
		switch {
		case a == pick:
			return -1
		case b == pick:
			return 1
		case sc.util[a] > sc.util[b]:
			return -1
		case sc.util[a] < sc.util[b]:
			return 1
		}
		return 0
	})
	sc.sorted = append(sc.sorted[:0], cands...)
	for i, j := range sc.order {
		cands[i] = sc.sorted[j]
	}
	clear(sc.sorted) // do not keep the candidates

	b := make([]byte, 0, 48)
	b = append(b, "classifier="...)
	b = strconv.AppendFloat(b, p, 'f', 2, 64)
	if s.QualityTarget != nil {
		b = append(b, " target="...)
		b = strconv.AppendFloat(b, *s.QualityTarget, 'f', -1, 64)
	} else {
		b = append(b, " knob="...)
		b = strconv.AppendFloat(b, probability(s.Knob, DefaultKnob), 'f', -1, 64)
	}
	if s.MinConfidence > 0 && math.Abs(2*p-1) < s.MinConfidence {
		moved := 0
		if len(s.Premium) > 0 {
			moved = Prefer(cands, s.Premium)
		} else if premiumName != "" {
			moved = Prefer(cands, []string{premiumName})
		}
		if moved > 0 {
			b = append(b, " low_confidence"...)
		}
	}
	return Decision{Reason: string(b)}
}

// ClassifierUtilities computes each candidate's utility into util (pred
// less lambda times its cost relative to the highest cost; an unknown
// cost, NaN, counts as the highest) and returns the index of the pick:
// the highest utility, or with target, the cheapest candidate whose
// prediction reaches it (the best predicted when none does). Ties go to
// the lower cost, then to the first. Training uses it to calibrate the
// knob, so the strategy and its calibration choose alike.
func ClassifierUtilities(pred, cost []float64, lambda float64, target *float64, util []float64) int {
	hi := 0.0
	for _, c := range cost {
		if c > hi {
			hi = c
		}
	}
	rel := func(i int) float64 {
		c := cost[i]
		if math.IsNaN(c) || hi <= 0 {
			if math.IsNaN(c) {
				return 1
			}
			return 0
		}
		return c / hi
	}
	pick := 0
	for i := range pred {
		util[i] = pred[i] - lambda*rel(i)
	}
	if target != nil {
		found := -1
		for i := range pred {
			if pred[i] >= *target && (found < 0 || rel(i) < rel(found)) {
				found = i
			}
		}
		if found >= 0 {
			return found
		}
		for i := range pred {
			if pred[i] > pred[pick] {
				pick = i
			}
		}
		return pick
	}
	for i := range pred {
		if util[i] > util[pick] || util[i] == util[pick] && rel(i) < rel(pick) {
			pick = i
		}
	}
	return pick
}

// UnmarshalCaddyfile sets up the module from Caddyfile tokens. Syntax:
//
//	classifier <model_file> {
//		knob <0..1>
//		quality_target <0..1>
//		min_confidence <0..1>
//		premium <model...>
//		expected_output <tokens>
//	}
func (s *Classifier) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		s.ModelFile = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "model_file":
			if !d.AllArgs(&s.ModelFile) {
				return d.ArgErr()
			}
		case "knob":
			if err := floatArg(d, &s.Knob); err != nil {
				return err
			}
		case "quality_target":
			if err := floatArg(d, &s.QualityTarget); err != nil {
				return err
			}
		case "min_confidence":
			var v *float64
			if err := floatArg(d, &v); err != nil {
				return err
			}
			s.MinConfidence = *v
		case "premium":
			s.Premium = append(s.Premium, d.RemainingArgs()...)
			if len(s.Premium) == 0 {
				return d.ArgErr()
			}
		case "expected_output":
			if err := intArg(d, &s.ExpectedOutput); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Strategy              = (*Classifier)(nil)
	_ caddy.Provisioner     = (*Classifier)(nil)
	_ caddy.Validator       = (*Classifier)(nil)
	_ caddyfile.Unmarshaler = (*Classifier)(nil)
)

// WithKnob returns a copy of s (provisioned) with its knob set to k,
// sharing s's model: what eval sweeps. The knob of a classifier with a
// quality_target is its target, so that is what k sets there.
func (s *Classifier) WithKnob(k float64) *Classifier {
	c := *s
	if s.QualityTarget != nil {
		c.QualityTarget = &k
		return &c
	}
	c.Knob = &k
	c.lambda = s.model.Lambda(k)
	return &c
}
