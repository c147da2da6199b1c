package learn

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// RegistryModel is a model as eval sees it: its registry name, prices
// (USD per million tokens) and configured quality.
type RegistryModel struct {
	Name        string  `json:"name"`
	InputPrice  float64 `json:"input_price,omitempty"`
	OutputPrice float64 `json:"output_price,omitempty"`
	Quality     float64 `json:"quality,omitempty"`
}

// RegistryFromData derives a registry from routing data: each model's
// mean score as its quality, and its price per token (its costs over
// the tokens of its prompts plus the default expected output, or a
// relative price by rank of quality when the data has no costs) as both
// its input and output price.
func RegistryFromData(recs []Record) []RegistryModel {
	reqs := make([]strategies.Request, len(recs))
	for i, r := range recs {
		reqs[i] = PromptRequest(r.Prompt)
	}
	var reg []RegistryModel
	for _, s := range statsOf(recs, reqs) {
		reg = append(reg, RegistryModel{Name: s.Name, InputPrice: s.Price * 1e6, OutputPrice: s.Price * 1e6, Quality: s.Quality})
	}
	return reg
}

// EvalOptions are the settings of Eval.
type EvalOptions struct {
	// Strategy is the strategy's JSON config, with its module name in
	// "name", as in a route's "strategy".
	Strategy json.RawMessage
	// Registry are the models; a dataset model is a candidate when a
	// registry model has its name.
	Registry []RegistryModel
	// Steps is the number of intervals of the knob sweep. Default 20.
	Steps int
	// Decisions, when set, receives every decision as a JSON line
	// {"id","knob","model"}.
	Decisions io.Writer

	classifier *strategies.Classifier // provisioned, for tests
}

// Point is the outcome of one knob value over the data.
type Point struct {
	Knob    float64 // NaN for a strategy without a knob
	Quality float64 // mean score of the picks
	Cost    float64 // mean $ of the picks, or the share of calls to the strongest model
	Share   []float64
}

// Report is the outcome of an eval.
type Report struct {
	Strategy  string
	Prompts   int
	Models    []string // the candidates, in registry order
	CostIsUSD bool
	Strongest int // index in Models of the highest mean score
	Singles   []Point
	Points    []Point
}

// Eval replays a strategy over recs for each value of its knob. The
// strategy is the real module, set up as Caddy does: classifier sweeps
// its knob from 0 to 1; balanced sweeps quality_weight k against
// cost_weight 1−k (latency off); difficulty becomes a two-tier router,
// the cheapest model below a threshold and the strongest from it, the
// thresholds swept over the quantiles of its scores on the data; other
// strategies (cheapest, rules, …) are one point as configured.
func Eval(recs []Record, opt EvalOptions) (*Report, error) {
	if opt.Steps <= 0 {
		opt.Steps = 20
	}
	info, err := strategyModule(opt.Strategy)
	if err != nil {
		return nil, err
	}

	// The candidates: registry models that the data scores.
	reg, err := scoredModels(opt.Registry, recs)
	if err != nil {
		return nil, err
	}
	rep := &Report{Strategy: info.ID.Name(), Prompts: len(recs), CostIsUSD: hasCosts(recs)}
	for _, m := range reg {
		rep.Models = append(rep.Models, m.Name)
	}
	reqs := make([]strategies.Request, len(recs))
	for i, r := range recs {
		reqs[i] = PromptRequest(r.Prompt)
	}
	// Single models, and the strongest.
	for j, m := range rep.Models {
		p := Point{Knob: math.NaN(), Share: make([]float64, len(reg))}
		p.Share[j] = 1
		var n float64
		for _, r := range recs {
			if s, ok := r.Scores[m]; ok {
				p.Quality += s
				p.Cost += r.Costs[m]
				n++
			}
		}
		p.Quality /= max(n, 1)
		p.Cost /= max(n, 1)
		rep.Singles = append(rep.Singles, p)
		if p.Quality > rep.Singles[rep.Strongest].Quality {
			rep.Strongest = j
		}
	}
	if !rep.CostIsUSD {
		for j := range rep.Singles {
			rep.Singles[j].Cost = 0
		}
		rep.Singles[rep.Strongest].Cost = 1
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	newStrategy := func(raw json.RawMessage, setup func(caddy.Module)) (strategies.Strategy, error) {
		return provisionStrategy(ctx, info, raw, setup)
	}

	type run struct {
		knob float64
		s    strategies.Strategy
	}
	var runs []run
	switch info.ID.Name() {
	case "classifier":
		c := opt.classifier
		if c == nil {
			base, err := newStrategy(opt.Strategy, nil)
			if err != nil {
				return nil, err
			}
			c = base.(*strategies.Classifier)
		}
		for i := 0; i <= opt.Steps; i++ {
			k := float64(i) / float64(opt.Steps)
			runs = append(runs, run{k, c.WithKnob(k)})
		}
	case "balanced":
		for i := 0; i <= opt.Steps; i++ {
			k := float64(i) / float64(opt.Steps)
			s, err := newStrategy(opt.Strategy, func(m caddy.Module) {
				b := m.(*strategies.Balanced)
				q, c, l := k, 1-k, 0.0
				b.QualityWeight, b.CostWeight, b.LatencyWeight = &q, &c, &l
			})
			if err != nil {
				return nil, err
			}
			runs = append(runs, run{k, s})
		}
	case "difficulty":
		cheap := cheapestModel(reg)
		strong := rep.Models[rep.Strongest]
		one := func(t float64) (strategies.Strategy, error) {
			return newStrategy(opt.Strategy, func(m caddy.Module) {
				d := m.(*strategies.Difficulty)
				d.Tiers = []strategies.DifficultyTier{{Min: 0, Models: []string{cheap}}}
				if t <= 0 {
					d.Tiers[0].Models = []string{strong}
				} else if t <= 1 {
					d.Tiers = append(d.Tiers, strategies.DifficultyTier{Min: t, Models: []string{strong}})
				}
			})
		}
		probe, err := one(2)
		if err != nil {
			return nil, err
		}
		scores := make([]float64, len(reqs))
		for i := range reqs {
			scores[i] = probe.(*strategies.Difficulty).Assess(&reqs[i]).Score
		}
		for _, t := range thresholds(scores, opt.Steps) {
			s, err := one(t)
			if err != nil {
				return nil, err
			}
			runs = append(runs, run{t, s})
		}
	default:
		s, err := newStrategy(opt.Strategy, nil)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run{math.NaN(), s})
	}

	var dw *bufio.Writer
	if opt.Decisions != nil {
		dw = bufio.NewWriter(opt.Decisions)
	}
	cands := make([]strategies.Candidate, 0, len(reg))
	for _, rn := range runs {
		p := Point{Knob: rn.knob, Share: make([]float64, len(reg))}
		for i, r := range recs {
			cands = candidatesOf(cands[:0], &r, reg)
			if len(cands) == 0 {
				continue
			}
			req := reqs[i] // a copy: a strategy must not change it, but may read it
			rn.s.Select(&req, cands)
			pick := cands[0].Model
			j := slices.Index(rep.Models, pick)
			p.Share[j]++
			p.Quality += r.Scores[pick]
			if rep.CostIsUSD {
				p.Cost += r.Costs[pick]
			} else if j == rep.Strongest {
				p.Cost++
			}
			if dw != nil {
				writeDecision(dw, r.ID, rn.knob, pick)
			}
		}
		n := float64(len(recs))
		p.Quality /= n
		p.Cost /= n
		for j := range p.Share {
			p.Share[j] /= n
		}
		rep.Points = append(rep.Points, p)
	}
	if dw != nil {
		if err := dw.Flush(); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// strategyModule is the module of a strategy's JSON config, named by its
// "name".
func strategyModule(raw json.RawMessage) (caddy.ModuleInfo, error) {
	var head struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.Name == "" {
		return caddy.ModuleInfo{}, fmt.Errorf("strategy: want a JSON object with a \"name\": %s", raw)
	}
	info, err := caddy.GetModule(strategies.Namespace + "." + head.Name)
	if err != nil {
		return caddy.ModuleInfo{}, fmt.Errorf("strategy %q: %v", head.Name, err)
	}
	return info, nil
}

// provisionStrategy sets up the strategy module info from its JSON config
// as Caddy does (setup, when given, changes it before provisioning). An
// adaptive strategy without a seed is seeded with 1, so that an offline
// run is reproducible.
func provisionStrategy(ctx caddy.Context, info caddy.ModuleInfo, raw json.RawMessage, setup func(caddy.Module)) (strategies.Strategy, error) {
	mod := info.New()
	// As Caddy loads an inline module: its name out, then strictly, so
	// that an unknown (misspelt) field is an error, not ignored.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("strategy %s: %v", info.ID.Name(), err)
	}
	delete(fields, "name")
	config, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	if err := caddy.StrictUnmarshalJSON(config, mod); err != nil {
		return nil, fmt.Errorf("strategy %s: %v", info.ID.Name(), err)
	}
	if a, ok := mod.(*strategies.Adaptive); ok && a.Seed == 0 {
		a.Seed = 1
	}
	if setup != nil {
		setup(mod)
	}
	if p, ok := mod.(caddy.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			return nil, err
		}
	}
	if v, ok := mod.(caddy.Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	s, ok := mod.(strategies.Strategy)
	if !ok {
		return nil, fmt.Errorf("module %s is not a strategy", info.ID.Name())
	}
	return s, nil
}

// writeDecision writes one decision line.
func writeDecision(w *bufio.Writer, id string, knob float64, model string) {
	idj, _ := json.Marshal(id)
	mj, _ := json.Marshal(model)
	w.WriteString(`{"id":`)
	w.Write(idj)
	w.WriteString(`,"knob":`)
	if math.IsNaN(knob) {
		w.WriteString("null")
	} else {
		w.WriteString(strconv.FormatFloat(knob, 'g', -1, 64))
	}
	w.WriteString(`,"model":`)
	w.Write(mj)
	w.WriteString("}\n")
}

// cheapestModel is the registry model with the lowest input+output
// price (unpriced ones last), the first on ties.
// scoredModels returns the registry's models that the data scores.
func scoredModels(registry []RegistryModel, recs []Record) ([]RegistryModel, error) {
	inData := map[string]bool{}
	for _, m := range modelNames(recs) {
		inData[m] = true
	}
	var reg []RegistryModel
	for _, m := range registry {
		if inData[m.Name] {
			reg = append(reg, m)
		}
	}
	if len(reg) == 0 {
		return nil, errors.New("no registry model has the name of a model in the data")
	}
	return reg, nil
}

// candidatesOf appends to dst the registry's models that record r has a
// score of, as the candidates of its prompt.
func candidatesOf(dst []strategies.Candidate, r *Record, reg []RegistryModel) []strategies.Candidate {
	for _, m := range reg {
		if _, ok := r.Scores[m.Name]; ok {
			dst = append(dst, strategies.Candidate{
				Model: m.Name, UpstreamModel: m.Name,
				InputPrice: m.InputPrice, OutputPrice: m.OutputPrice,
				Priced:  m.InputPrice > 0 || m.OutputPrice > 0,
				Quality: m.Quality, Weight: 1,
			})
		}
	}
	return dst
}

func cheapestModel(reg []RegistryModel) string {
	best, bestPrice := 0, math.Inf(1)
	for i, m := range reg {
		p := m.InputPrice + m.OutputPrice
		if p <= 0 {
			p = math.MaxFloat64
		}
		if p < bestPrice {
			best, bestPrice = i, p
		}
	}
	return reg[best].Name
}

// thresholds returns the distinct difficulty thresholds at steps+1
// quantiles of scores: from one above every score (all to the cheap
// tier) down to the lowest (all to the strong one), ascending in share.
func thresholds(scores []float64, steps int) []float64 {
	s := slices.Clone(scores)
	slices.Sort(s)
	out := []float64{2} // above any score: no prompt reaches the strong tier
	for i := 1; i <= steps; i++ {
		// The score at which a share i/steps of the prompts is at or above.
		idx := len(s) - int(math.Round(float64(i)/float64(steps)*float64(len(s))))
		idx = min(max(idx, 0), len(s)-1)
		t := s[idx]
		if t <= 0 {
			t = 0
		}
		if t != out[len(out)-1] {
			out = append(out, t)
		}
	}
	return out
}

// Print writes the report as a table, followed by APGR and CPT for two
// models and by AIQ and dominance for more.
func (rep *Report) Print(w io.Writer) {
	unit := "mean $"
	if !rep.CostIsUSD {
		unit = "strong share"
	}
	fmt.Fprintf(w, "strategy %s: %d prompts, %d models; cost = %s", rep.Strategy, rep.Prompts, len(rep.Models), unit)
	if !rep.CostIsUSD {
		fmt.Fprintf(w, " (calls to %s)", rep.Models[rep.Strongest])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "models:")
	for j, m := range rep.Models {
		s := rep.Singles[j]
		fmt.Fprintf(w, "  m%-2d %-40s quality %.4f  cost %s\n", j+1, m, s.Quality, fmtCost(s.Cost, rep.CostIsUSD))
	}
	fmt.Fprintf(w, "%-8s %-8s %-10s", "knob", "quality", "cost")
	for j := range rep.Models {
		fmt.Fprintf(w, " %6s", "m"+strconv.Itoa(j+1))
	}
	fmt.Fprintln(w)
	for _, p := range rep.Points {
		k := "-"
		if !math.IsNaN(p.Knob) {
			k = strconv.FormatFloat(p.Knob, 'f', 4, 64)
		}
		fmt.Fprintf(w, "%-8s %-8.4f %-10s", k, p.Quality, fmtCost(p.Cost, rep.CostIsUSD))
		for _, s := range p.Share {
			fmt.Fprintf(w, " %6.3f", s)
		}
		fmt.Fprintln(w)
	}
	if len(rep.Models) == 2 {
		weak := 1 - rep.Strongest
		apgr, cpt50, cpt80 := PGR(rep.Points, rep.Strongest, rep.Singles[weak].Quality, rep.Singles[rep.Strongest].Quality)
		fmt.Fprintf(w, "APGR %.4f  CPT(50%%) %s  CPT(80%%) %s\n", apgr, fmtShare(cpt50), fmtShare(cpt80))
	} else if len(rep.Models) > 2 {
		router, zero := AIQ(rep.Points, rep.Singles)
		fmt.Fprintf(w, "AIQ %.4f  zero router %.4f  gain %+.4f\n", router, zero, router-zero)
		top := 0
		for j, s := range rep.Singles {
			if s.Cost > rep.Singles[top].Cost {
				top = j
			}
		}
		for j, s := range rep.Singles {
			best := math.NaN()
			for _, p := range rep.Points {
				if p.Quality >= s.Quality && p.Cost <= s.Cost && !(p.Cost >= best) {
					best = p.Cost
				}
			}
			verdict := "not dominated"
			if !math.IsNaN(best) {
				verdict = fmt.Sprintf("dominated (its quality at %.0f%% of its cost)", 100*best/s.Cost)
			}
			if j == top {
				verdict += " [most expensive]"
			}
			fmt.Fprintf(w, "  m%-2d %s\n", j+1, verdict)
		}
		// The flagship: the most expensive model.
		sq := rep.Singles[top]
		reach := math.NaN()
		for _, p := range rep.Points {
			if p.Quality >= sq.Quality && !(p.Cost >= reach) {
				reach = p.Cost
			}
		}
		if math.IsNaN(reach) {
			fmt.Fprintf(w, "the most expensive model's quality (m%d, %.4f) is not reached\n", top+1, sq.Quality)
		} else {
			fmt.Fprintf(w, "the most expensive model's quality (m%d, %.4f) is reached at %.1f%% of its cost\n", top+1, sq.Quality, 100*reach/sq.Cost)
		}
	}
}

func fmtCost(c float64, usd bool) string {
	if usd {
		return strconv.FormatFloat(c, 'f', 6, 64)
	}
	return strconv.FormatFloat(c, 'f', 4, 64)
}

func fmtShare(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*s)
}

// PGR computes, for a two-model sweep, APGR (the area under the
// performance-gap-recovered curve over the share of calls to the strong
// model, the sweep's points joined by straight lines, from all-weak at 0
// to all-strong at 1) and CPT(50%) and CPT(80%) (the lowest share at
// which that curve recovers half and 80% of the gap; NaN if never).
func PGR(points []Point, strong int, weakQ, strongQ float64) (apgr, cpt50, cpt80 float64) {
	type xy struct{ x, y float64 }
	gap := strongQ - weakQ
	pts := []xy{{0, 0}, {1, 1}}
	for _, p := range points {
		y := 0.0
		if gap != 0 {
			y = (p.Quality - weakQ) / gap
		}
		pts = append(pts, xy{p.Share[strong], y})
	}
	slices.SortStableFunc(pts, func(a, b xy) int {
		if a.x != b.x {
			if a.x < b.x {
				return -1
			}
			return 1
		}
		return 0
	})
	// Points at the same share: their mean.
	var merged []xy
	for i := 0; i < len(pts); {
		j, sum := i, 0.0
		for ; j < len(pts) && pts[j].x == pts[i].x; j++ {
			sum += pts[j].y
		}
		merged = append(merged, xy{pts[i].x, sum / float64(j-i)})
		i = j
	}
	for i := 1; i < len(merged); i++ {
		a, b := merged[i-1], merged[i]
		apgr += (b.x - a.x) * (a.y + b.y) / 2
	}
	cpt := func(level float64) float64 {
		if merged[0].y >= level {
			return merged[0].x
		}
		for i := 1; i < len(merged); i++ {
			a, b := merged[i-1], merged[i]
			if b.y >= level {
				return a.x + (b.x-a.x)*(level-a.y)/(b.y-a.y)
			}
		}
		return math.NaN()
	}
	return apgr, cpt(0.5), cpt(0.8)
}

// AIQ returns the mean best quality at cost of the router's points (plus
// the cheapest single model's) and of the zero router (the single
// models'), over the cost range of the single models: each the upper
// concave envelope of its points, kept non-decreasing.
func AIQ(points, singles []Point) (router, zero float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	cheapest := 0
	for j, s := range singles {
		if s.Cost < lo {
			lo, cheapest = s.Cost, j
		}
		hi = max(hi, s.Cost)
	}
	withCheap := append(slices.Clone(points), singles[cheapest])
	return envelopeMean(withCheap, lo, hi), envelopeMean(singles, lo, hi)
}

// envelopeMean is the mean over [lo, hi] of the non-decreasing upper
// concave envelope of pts (quality against cost).
func envelopeMean(pts []Point, lo, hi float64) float64 {
	if hi <= lo {
		best := math.Inf(-1)
		for _, p := range pts {
			if p.Cost <= lo {
				best = max(best, p.Quality)
			}
		}
		return best
	}
	const n = 4000
	sum, run := 0.0, math.Inf(-1)
	for g := 0; g <= n; g++ {
		c := lo + (hi-lo)*float64(g)/n
		v := math.Inf(-1)
		for _, a := range pts {
			if a.Cost > c {
				continue
			}
			v = max(v, a.Quality)
			for _, b := range pts {
				if c <= b.Cost && a.Cost < b.Cost {
					v = max(v, a.Quality+(b.Quality-a.Quality)*(c-a.Cost)/(b.Cost-a.Cost))
				}
			}
		}
		run = max(run, v)
		w := 1.0
		if g == 0 || g == n {
			w = 0.5
		}
		sum += w * run
	}
	return sum / n
}

// strategyJSON turns a strategy given on the command line into its JSON
// config: a JSON object as is, or a bare module name.
func strategyJSON(s string) json.RawMessage {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(map[string]string{"name": s})
	return b
}
