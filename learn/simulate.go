package learn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// SimOptions are the settings of Simulate.
type SimOptions struct {
	// Strategy is the JSON config of a strategy that learns
	// (strategies.Learner), e.g. {"name":"adaptive","cost_weight":0.5}.
	// Without a seed, adaptive is seeded with 1, so a run is reproducible.
	Strategy json.RawMessage
	// Registry are the models (prices and prior qualities); a dataset
	// model is a candidate when a registry model has its name.
	Registry []RegistryModel
	// Checkpoints are the prompt counts reported, besides all of them.
	// Default: 100, 200, 500.
	Checkpoints []int
}

// SimPoint is the running outcome after the first N prompts: the sums of
// the scores and costs of the strategy's picks, and of each model's
// (every prompt to that model).
type SimPoint struct {
	N             int
	Quality, Cost float64
	Fixed         []SimSums // by model, in SimReport.Models order
	Picks         []int     // the strategy's picks so far, by model
}

// SimSums are the sums of scores and costs over prompts.
type SimSums struct{ Quality, Cost float64 }

// SimReport is the outcome of a simulation.
type SimReport struct {
	Strategy  string
	Prompts   int
	Models    []string
	CostIsUSD bool
	// CostWeight is the strategy's price on quality (λ) when it says.
	CostWeight float64
	Points     []SimPoint // at each checkpoint, the last at all prompts
	Picks      []int      // picks per model
	// BestFixed is the model of the highest mean quality − λ·its mean
	// cost's strategies.CostPenalty among the models, in hindsight: the
	// single choice the strategy's objective prefers. BestRatio is the
	// model of the highest quality per cost.
	BestFixed, BestRatio int
	// Penalty is each model's place on the log scale of mean cost over
	// all prompts (strategies.CostPenalty: the cheapest 0, the dearest
	// 1), by which the objective charges a call to it.
	Penalty []float64
}

// Objective is the strategy's objective over the first p.N prompts:
// mean quality − λ × the mean Penalty of its picks.
func (rep *SimReport) Objective(p SimPoint) float64 {
	pen := 0.0
	for j, n := range p.Picks {
		pen += float64(n) * rep.Penalty[j]
	}
	return (p.Quality - rep.CostWeight*pen) / float64(p.N)
}

// FixedObjective is the objective of always calling model j over the
// first p.N prompts.
func (rep *SimReport) FixedObjective(p SimPoint, j int) float64 {
	return p.Fixed[j].Quality/float64(p.N) - rep.CostWeight*rep.Penalty[j]
}

// Simulate streams recs in order through a learning strategy, as the
// gateway would meet them: at each prompt the strategy picks among the
// models the prompt is scored for, learns the data's score of its pick
// as explicit feedback (Observe, in the context the decision was made
// in), and pays the data's cost of the pick. Without costs in the data,
// a call costs its model's registry price relative to the highest (the
// strongest model 1).
func Simulate(recs []Record, opt SimOptions) (*SimReport, error) {
	info, err := strategyModule(opt.Strategy)
	if err != nil {
		return nil, err
	}
	if len(opt.Checkpoints) == 0 {
		opt.Checkpoints = []int{100, 200, 500}
	}
	reg, err := scoredModels(opt.Registry, recs)
	if err != nil {
		return nil, err
	}
	rep := &SimReport{Strategy: info.ID.Name(), Prompts: len(recs), CostIsUSD: hasCosts(recs), Picks: make([]int, len(reg))}
	topPrice := 0.0
	for _, m := range reg {
		rep.Models = append(rep.Models, m.Name)
		topPrice = max(topPrice, m.InputPrice+m.OutputPrice)
	}
	costOf := func(r *Record, j int) float64 {
		if rep.CostIsUSD {
			return r.Costs[reg[j].Name]
		}
		if topPrice == 0 {
			return 1
		}
		return (reg[j].InputPrice + reg[j].OutputPrice) / topPrice
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	s, err := provisionStrategy(ctx, info, opt.Strategy, nil)
	if err != nil {
		return nil, err
	}
	l, ok := s.(strategies.Learner)
	if !ok {
		return nil, fmt.Errorf("strategy %s does not learn online (only a learning strategy such as adaptive can be simulated)", info.ID.Name())
	}
	if a, ok := s.(*strategies.Adaptive); ok {
		rep.CostWeight = 0.5
		if a.CostWeight != nil {
			rep.CostWeight = *a.CostWeight
		}
	}

	cur := SimPoint{Fixed: make([]SimSums, len(reg)), Picks: make([]int, len(reg))}
	cands := make([]strategies.Candidate, 0, len(reg))
	next := 0
	for i := range recs {
		r := &recs[i]
		req := PromptRequest(r.Prompt)
		cands = candidatesOf(cands[:0], r, reg)
		if len(cands) == 0 {
			continue
		}
		s.Select(&req, cands)
		pick := cands[0].Model
		j := slices.Index(rep.Models, pick)
		score := r.Scores[pick]
		l.Observe(l.ContextOf(&req), pick, score)
		rep.Picks[j]++
		cur.Picks[j]++
		cur.N++
		cur.Quality += score
		cur.Cost += costOf(r, j)
		for k, m := range reg {
			cur.Fixed[k].Quality += r.Scores[m.Name]
			cur.Fixed[k].Cost += costOf(r, k)
		}
		for next < len(opt.Checkpoints) && cur.N == opt.Checkpoints[next] {
			rep.Points = append(rep.Points, snapshot(cur))
			next++
		}
	}
	if len(rep.Points) == 0 || rep.Points[len(rep.Points)-1].N != cur.N {
		rep.Points = append(rep.Points, snapshot(cur))
	}

	// The best fixed choices in hindsight, over all prompts.
	all := rep.Points[len(rep.Points)-1]
	lo, hi := math.Inf(1), 0.0
	for _, f := range all.Fixed {
		lo, hi = min(lo, f.Cost), max(hi, f.Cost)
	}
	bestU, bestR := math.Inf(-1), math.Inf(-1)
	for _, f := range all.Fixed {
		rep.Penalty = append(rep.Penalty, strategies.CostPenalty(f.Cost, lo, hi))
	}
	for k, f := range all.Fixed {
		u := f.Quality - rep.CostWeight*rep.Penalty[k]*float64(all.N)
		if u > bestU {
			bestU, rep.BestFixed = u, k
		}
		if r := ratio(f.Quality, f.Cost); r > bestR {
			bestR, rep.BestRatio = r, k
		}
	}
	return rep, nil
}

func snapshot(p SimPoint) SimPoint {
	p.Fixed = slices.Clone(p.Fixed)
	p.Picks = slices.Clone(p.Picks)
	return p
}

// ratio is quality per cost (+Inf at no cost).
func ratio(q, c float64) float64 {
	if c <= 0 {
		return math.Inf(1)
	}
	return q / c
}

// Print writes the simulation's report: at each checkpoint the
// strategy's running mean quality, mean cost and quality per cost, next
// to those of the best fixed choice over the same prompts, and both
// runs' objective (mean quality − λ × mean log-cost penalty).
func (rep *SimReport) Print(w io.Writer) {
	unit := "mean $"
	if !rep.CostIsUSD {
		unit = "relative price (strongest 1)"
	}
	fmt.Fprintf(w, "simulation of %s: %d prompts in data order, %d models; cost = %s; objective quality − %g·log-cost (cheapest 0, dearest 1)\n",
		rep.Strategy, rep.Prompts, len(rep.Models), unit, rep.CostWeight)
	all := rep.Points[len(rep.Points)-1]
	fmt.Fprintln(w, "models (over all prompts):")
	for j, m := range rep.Models {
		f := all.Fixed[j]
		n := float64(all.N)
		tag := ""
		if j == rep.BestFixed {
			tag += " [best fixed for the objective]"
		}
		if j == rep.BestRatio {
			tag += " [best quality per cost]"
		}
		fmt.Fprintf(w, "  m%-2d %-40s quality %.4f  cost %s  picked %5.1f%%%s\n", j+1, m, f.Quality/n, fmtCost(f.Cost/n, rep.CostIsUSD),
			100*float64(rep.Picks[j])/n, tag)
	}
	fmt.Fprintf(w, "%-8s %-8s %-10s %-10s | %-8s %-10s %-10s | %-15s | %s\n", "prompts", "quality", "cost", "q/cost",
		"fixed q", "fixed cost", "fixed q/c", "q/cost vs fixed", "objective vs fixed")
	for _, p := range rep.Points {
		n := float64(p.N)
		f := p.Fixed[rep.BestFixed]
		fmt.Fprintf(w, "%-8d %-8.4f %-10s %-10s | %-8.4f %-10s %-10s | %-15s | %.4f vs %.4f\n", p.N, p.Quality/n, fmtCost(p.Cost/n, rep.CostIsUSD),
			fmtRatio(ratio(p.Quality, p.Cost)), f.Quality/n, fmtCost(f.Cost/n, rep.CostIsUSD), fmtRatio(ratio(f.Quality, f.Cost)),
			fmtPct(ratio(p.Quality, p.Cost)/ratio(f.Quality, f.Cost)), rep.Objective(p), rep.FixedObjective(p, rep.BestFixed))
	}
	fmt.Fprintf(w, "cumulative over %d prompts: quality %.1f at cost %s; best fixed (m%d) quality %.1f at cost %s\n",
		all.N, all.Quality, fmtCost(all.Cost, rep.CostIsUSD), rep.BestFixed+1,
		all.Fixed[rep.BestFixed].Quality, fmtCost(all.Fixed[rep.BestFixed].Cost, rep.CostIsUSD))
}

func fmtRatio(r float64) string {
	if math.IsInf(r, 1) {
		return "inf"
	}
	return strconv.FormatFloat(r, 'g', 5, 64)
}

func fmtPct(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*r)
}
