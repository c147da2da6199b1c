package learn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// TrainOptions are the settings of Train.
type TrainOptions struct {
	// Bits is the log2 of the number of hashed text features. Default 16.
	Bits int
	// Epochs over the data. Default 6.
	Epochs int
	// Seed of the order in which examples are visited. Training is
	// deterministic for a seed.
	Seed int64
	// Rate is AdaGrad's learning rate. Default 0.02.
	Rate float64
	// L2Shared and L2Own are the L2 penalties of the shared weights and
	// of each model's own weights. Defaults 1e-4 and 1e-3.
	L2Shared, L2Own float64
	// Folds is the number of folds of the cross-fitting that
	// calibrates the predictions (see Train); below 2 (the default),
	// none.
	Folds int
	// KnobSteps is the number of intervals of the knob's calibration
	// grid. Default 20.
	KnobSteps int
}

func (o *TrainOptions) defaults() {
	if o.Bits == 0 {
		o.Bits = 16
	}
	if o.Epochs == 0 {
		o.Epochs = 6
	}
	if o.Rate == 0 {
		o.Rate = 0.02
	}
	if o.L2Shared == 0 {
		o.L2Shared = 1e-4
	}
	if o.L2Own == 0 {
		o.L2Own = 1e-3
	}
	if o.KnobSteps == 0 {
		o.KnobSteps = 20
	}
}

// Train fits a classifier model to recs: for each model a logistic
// regression of its score on the prompt's features (shared weights plus
// the model's own), by AdaGrad with L2 penalties. Scores between 0 and 1
// are soft labels. With Folds ≥ 2 it then shrinks each model's
// predictions toward its mean by what they are worth on data they were
// not fitted to: it fits the same regression on all folds but one,
// predicts the one left out, and fits p' = sigmoid(a·logit(p) + b) per
// model to those out-of-fold predictions (Platt scaling, a ≥ 0), which
// it folds into the final model's weights. A model whose predictions
// carry nothing out of fold gets a = 0: its train mean for every prompt.
// Folds are by subject (the id's prefix before its last '-', as MMLU's)
// when the data has at least 2·Folds subjects, else by position. Last it
// calibrates the knob on the training data.
func Train(recs []Record, opt TrainOptions) (*strategies.ClassifierModel, error) {
	opt.defaults()
	if opt.Bits < 4 || opt.Bits > 24 {
		return nil, fmt.Errorf("bits must be from 4 to 24, got %d", opt.Bits)
	}
	if len(recs) == 0 {
		return nil, errors.New("no training records")
	}
	reqs := make([]strategies.Request, len(recs))
	xs := make([][]strategies.Feature, len(recs))
	for i, r := range recs {
		reqs[i] = PromptRequest(r.Prompt)
		xs[i] = strategies.ClassifierFeatures(&reqs[i], opt.Bits, nil)
	}
	st := statsOf(recs, reqs)
	index := map[string]int{}
	for i, s := range st {
		index[s.Name] = i
	}
	labels := make([][]label, len(recs))
	for i, r := range recs {
		for name, y := range r.Scores {
			labels[i] = append(labels[i], label{index[name], y})
		}
		// Map order is random: sort for determinism.
		slices.SortFunc(labels[i], func(a, b label) int { return a.arm - b.arm })
	}
	all := make([]int, len(recs))
	for i := range all {
		all[i] = i
	}
	m := fit(st, xs, labels, all, opt)
	if folds := foldsOf(recs, opt.Folds); folds != nil {
		// Out-of-fold logits and labels, per model.
		z := make([][]float64, len(st))
		y := make([][]float64, len(st))
		for k := range opt.Folds {
			var in []int
			for i := range recs {
				if folds[i] != k {
					in = append(in, i)
				}
			}
			mk := fit(st, xs, labels, in, opt)
			for i := range recs {
				if folds[i] != k {
					continue
				}
				shared := mk.SharedScore(xs[i])
				for _, l := range labels[i] {
					p := mk.PredictShared(&mk.Models[l.arm], shared, xs[i])
					p = min(max(p, 1e-6), 1-1e-6)
					z[l.arm] = append(z[l.arm], math.Log(p/(1-p)))
					y[l.arm] = append(y[l.arm], l.y)
				}
			}
		}
		for j := range m.Models {
			a, b := platt(z[j], y[j])
			arm := &m.Models[j]
			arm.Bias = float32(a*float64(arm.Bias) + b)
			arm.Scale = float32(a * float64(arm.Scale))
			for w := range arm.Weights {
				arm.Weights[w] = float32(a * float64(arm.Weights[w]))
			}
		}
	}
	m.Lambdas = calibrate(m, recs, reqs, xs, opt.KnobSteps)
	if err := m.Check(); err != nil {
		return nil, err
	}
	return m, nil
}

// label is one model's score on one prompt.
type label struct {
	arm int
	y   float64
}

// foldsOf assigns each record to one of n folds: by subject when there
// are at least 2n subjects (sorted, dealt in turn), else by position;
// nil when n < 2 or there are fewer than 2n records.
func foldsOf(recs []Record, n int) []int {
	if n < 2 || len(recs) < 2*n {
		return nil
	}
	var subjects []string
	seen := map[string]bool{}
	for _, r := range recs {
		if s := Subject(r.ID); !seen[s] {
			seen[s] = true
			subjects = append(subjects, s)
		}
	}
	out := make([]int, len(recs))
	if len(subjects) >= 2*n {
		slices.Sort(subjects)
		fold := map[string]int{}
		for i, s := range subjects {
			fold[s] = i % n
		}
		for i, r := range recs {
			out[i] = fold[Subject(r.ID)]
		}
		return out
	}
	for i := range out {
		out[i] = i % n
	}
	return out
}

// platt fits p = sigmoid(a·z + b) to soft labels y, minimising the log
// loss: a over a grid from 0 to 2 (a ≥ 0: predictions that rank the
// wrong way out of fold are dropped, not reversed), b for each a by
// Newton's method.
func platt(z, y []float64) (a, b float64) {
	if len(z) == 0 {
		return 1, 0
	}
	best := math.Inf(1)
	for step := 0; step <= 100; step++ {
		ak := float64(step) / 50
		bk, loss := 0.0, 0.0
		for range 30 {
			var g, h float64
			loss = 0
			for i := range z {
				p := strategies.Sigmoid(ak*z[i] + bk)
				g += p - y[i]
				h += max(p*(1-p), 1e-9)
				p = min(max(p, 1e-12), 1-1e-12)
				loss -= y[i]*math.Log(p) + (1-y[i])*math.Log(1-p)
			}
			d := max(min(g/h, 5), -5)
			bk -= d
			if math.Abs(d) < 1e-7 {
				break
			}
		}
		if loss < best {
			best, a, b = loss, ak, bk
		}
	}
	return a, b
}

// fit fits the logistic regressions to the records rows (indices into
// xs and labels), by AdaGrad over opt.Epochs shuffled passes; the result
// is the average of the weights after each epoch of the second half.
func fit(st []modelStats, xs [][]strategies.Feature, labels [][]label, rows []int, opt TrainOptions) *strategies.ClassifierModel {
	m := &strategies.ClassifierModel{Version: strategies.ClassifierVersion, Bits: opt.Bits, Seed: opt.Seed}
	dim := m.Dim()
	m.Shared = make(strategies.Floats, dim)
	for _, s := range st {
		q := min(max(s.Quality, 0.01), 0.99)
		m.Models = append(m.Models, strategies.ClassifierArm{
			Name: s.Name, Bias: float32(math.Log(q / (1 - q))), Scale: 1,
			Weights: make(strategies.Floats, dim), MeanQuality: s.Quality, Price: s.Price,
		})
	}

	// AdaGrad accumulators.
	gShared := make([]float32, dim)
	gOwn := make([][]float32, len(st))
	for i := range gOwn {
		gOwn[i] = make([]float32, dim)
	}
	gBias := make([]float64, len(st))
	gScale := make([]float64, len(st))
	rng := rand.New(rand.NewPCG(uint64(opt.Seed), 0x6c6c6d))
	order := slices.Clone(rows)
	// The result is the average of the weights after each epoch of the
	// second half (averaged SGD), which is steadier than the last ones.
	avg := newAverage(m)
	rate := float32(opt.Rate)
	l2s, l2o := float32(opt.L2Shared), float32(opt.L2Own)
	for epoch := range opt.Epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			x := xs[i]
			shared := m.SharedScore(x)
			var gs float32 // the shared score's gradient over the labels
			for _, l := range labels[i] {
				arm := &m.Models[l.arm]
				g := m.PredictShared(arm, shared, x) - l.y
				gBias[l.arm] += g * g
				arm.Bias -= float32(opt.Rate * g / math.Sqrt(gBias[l.arm]+1e-8))
				ga := g*shared + opt.L2Own*float64(arm.Scale-1)
				gScale[l.arm] += ga * ga
				gs += float32(g) * arm.Scale
				arm.Scale -= float32(opt.Rate * ga / math.Sqrt(gScale[l.arm]+1e-8))
				own := gOwn[l.arm]
				g32 := float32(g)
				for _, f := range x {
					j := f.Index
					gw := g32*f.Value + l2o*arm.Weights[j]
					own[j] += gw * gw
					arm.Weights[j] -= rate * gw / sqrt32(own[j]+1e-8)
				}
			}
			for _, f := range x {
				j := f.Index
				gw := gs*f.Value + l2s*m.Shared[j]
				gShared[j] += gw * gw
				m.Shared[j] -= rate * gw / sqrt32(gShared[j]+1e-8)
			}
		}
		if 2*(epoch+1) > opt.Epochs {
			avg.add(m)
		}
	}
	avg.into(m)
	return m
}

func sqrt32(v float32) float32 { return float32(math.Sqrt(float64(v))) }

// average sums a model's parameters over epochs.
type average struct {
	n           int
	shared      []float64
	own         [][]float64
	bias, scale []float64
}

func newAverage(m *strategies.ClassifierModel) *average {
	a := &average{shared: make([]float64, len(m.Shared)), bias: make([]float64, len(m.Models)), scale: make([]float64, len(m.Models))}
	for range m.Models {
		a.own = append(a.own, make([]float64, len(m.Shared)))
	}
	return a
}

func (a *average) add(m *strategies.ClassifierModel) {
	a.n++
	for j, v := range m.Shared {
		a.shared[j] += float64(v)
	}
	for i := range m.Models {
		a.bias[i] += float64(m.Models[i].Bias)
		a.scale[i] += float64(m.Models[i].Scale)
		for j, v := range m.Models[i].Weights {
			a.own[i][j] += float64(v)
		}
	}
}

// into sets m's parameters to the average.
func (a *average) into(m *strategies.ClassifierModel) {
	if a.n == 0 {
		return
	}
	n := float64(a.n)
	for j := range m.Shared {
		m.Shared[j] = float32(a.shared[j] / n)
	}
	for i := range m.Models {
		m.Models[i].Bias = float32(a.bias[i] / n)
		m.Models[i].Scale = float32(a.scale[i] / n)
		for j := range m.Models[i].Weights {
			m.Models[i].Weights[j] = float32(a.own[i][j] / n)
		}
	}
}

// calibrate returns the knob's price on quality at steps+1 evenly spaced
// knob values: at knob k, the price at which the picks on recs spend
// about lo·(hi/lo)^k of the highest cost, where lo is the spend of the
// cheapest picks and hi that of the best predicted ones. The scale is
// geometric because prices span orders of magnitude: the cheap half of
// the knob covers the cheap models.
func calibrate(m *strategies.ClassifierModel, recs []Record, reqs []strategies.Request, xs [][]strategies.Feature, steps int) []float64 {
	type row struct {
		pred, cost []float64
	}
	rows := make([]row, len(recs))
	for i := range recs {
		var r row
		for j := range m.Models {
			a := &m.Models[j]
			if _, ok := recs[i].Scores[a.Name]; !ok {
				continue
			}
			r.pred = append(r.pred, m.Predict(a, xs[i]))
			r.cost = append(r.cost, a.Price*float64(reqs[i].PromptTokens+strategies.DefaultExpectedOutput))
		}
		rows[i] = r
	}
	util := make([]float64, len(m.Models))
	spend := func(lambda float64) float64 {
		var s float64
		for _, r := range rows {
			if len(r.pred) == 0 {
				continue
			}
			hi := 0.0
			for _, c := range r.cost {
				hi = max(hi, c)
			}
			p := strategies.ClassifierUtilities(r.pred, r.cost, lambda, nil, util[:len(r.pred)])
			if hi > 0 {
				s += r.cost[p] / hi
			}
		}
		return s / float64(len(rows))
	}
	const top = 1e4 // a price beyond any quality difference
	lo, hi := spend(top), spend(0)
	if lo <= 0 {
		lo = min(hi, 1e-9)
	}
	out := make([]float64, steps+1)
	for k := 0; k <= steps; k++ {
		target := lo * math.Pow(hi/lo, float64(k)/float64(steps))
		a, b := 0.0, top // spend(a) >= target >= spend(b)
		for range 40 {
			mid := (a + b) / 2
			if spend(mid) >= target {
				a = mid
			} else {
				b = mid
			}
		}
		out[k] = b
		if k == steps {
			out[k] = 0
		} else if k == 0 {
			out[k] = top
		}
	}
	// The price falls as the knob rises.
	for k := 1; k <= steps; k++ {
		out[k] = min(out[k], out[k-1])
	}
	return out
}
