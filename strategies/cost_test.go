package strategies_test

import (
	"cmp"
	"math"
	"slices"
	"testing"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// selPriced is a candidate for the cost and quality tables; a nil price
// means unpriced.
type selPriced struct {
	model   string
	price   *[2]float64 // input, output USD per million tokens
	quality float64
	lat     float64 // latency in ms with 5 samples; 0 is cold
}

func selPrice(in, out float64) *[2]float64 { return &[2]float64{in, out} }

func selCosted(ps ...selPriced) []strategies.Candidate {
	cands := make([]strategies.Candidate, len(ps))
	for i, p := range ps {
		c := &cands[i]
		c.Model = p.model
		if p.price != nil {
			c.Priced = true
			c.InputPrice, c.OutputPrice = p.price[0], p.price[1]
		}
		c.Quality = p.quality
		c.Stats.LatencyMs = p.lat
		c.Stats.TTFTMs = p.lat / 4
		if p.lat != 0 {
			c.Stats.Samples = 5
		}
	}
	return selIndexed(cands...)
}

func TestCheapest(t *testing.T) {
	tests := []struct {
		name  string
		s     strategies.Cheapest
		req   strategies.Request
		cands []selPriced
		want  string
	}{
		{
			name: "by cost, unpriced last, ties by quality",
			req:  strategies.Request{PromptTokens: 1000},
			cands: []selPriced{
				{model: "big", price: selPrice(10, 30), quality: 0.9},
				{model: "mini", price: selPrice(0.15, 0.6), quality: 0.5},
				{model: "unpriced-lo", quality: 0.9},
				{model: "free", price: selPrice(0, 0), quality: 0.1},
				{model: "mini-hq", price: selPrice(0.15, 0.6), quality: 0.8},
				{model: "unpriced-hi", quality: 0.95},
				{model: "unpriced-unknown"},
			},
			want: "free mini-hq mini big unpriced-hi unpriced-lo unpriced-unknown",
		},
		{
			name: "ties in quality keep configured order",
			req:  strategies.Request{PromptTokens: 10},
			cands: []selPriced{
				{model: "x", price: selPrice(1, 2), quality: 0.5},
				{model: "y", price: selPrice(1, 2), quality: 0.5},
				{model: "w", price: selPrice(1, 2)},
				{model: "z", price: selPrice(1, 2), quality: 0.5},
			},
			want: "x y z w",
		},
		{
			name: "output-heavy estimate prefers the cheap output",
			req:  strategies.Request{PromptTokens: 1000},
			cands: []selPriced{
				{model: "cheap-in", price: selPrice(1, 100)}, // 1000 + 25600
				{model: "cheap-out", price: selPrice(5, 1)},  // 5000 + 256
			},
			want: "cheap-out cheap-in",
		},
		{
			name: "max_tokens lowers the expected output",
			req:  strategies.Request{PromptTokens: 1000, MaxTokens: 10},
			cands: []selPriced{
				{model: "cheap-in", price: selPrice(1, 100)}, // 1000 + 1000
				{model: "cheap-out", price: selPrice(5, 1)},  // 5000 + 10
			},
			want: "cheap-in cheap-out",
		},
		{
			name: "configured expected_output",
			s:    strategies.Cheapest{ExpectedOutput: 10},
			req:  strategies.Request{PromptTokens: 1000},
			cands: []selPriced{
				{model: "cheap-out", price: selPrice(5, 1)},
				{model: "cheap-in", price: selPrice(1, 100)},
			},
			want: "cheap-in cheap-out",
		},
		{
			name: "a NaN price is unpriced, not cheapest",
			req:  strategies.Request{PromptTokens: 1000},
			cands: []selPriced{
				{model: "nan", price: selPrice(math.NaN(), 1)},
				{model: "dear", price: selPrice(100, 100)},
			},
			want: "dear nan",
		},
		{
			name:  "all unpriced by quality",
			req:   strategies.Request{PromptTokens: 1000},
			cands: []selPriced{{model: "a", quality: 0.2}, {model: "b"}, {model: "c", quality: 0.7}},
			want:  "c a b",
		},
		{name: "none", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := selCosted(tt.cands...)
			d := tt.s.Select(&tt.req, cands)
			if got := selModels(cands); got != tt.want {
				t.Errorf("order = %q, want %q", got, tt.want)
			}
			if d.Reason != "cheapest" {
				t.Errorf("reason = %q", d.Reason)
			}
		})
	}
}

func TestBestQuality(t *testing.T) {
	tests := []struct {
		name  string
		cands []selPriced
		want  string
	}{
		{
			name: "quality descending, unknown last, ties by cost",
			cands: []selPriced{
				{model: "a", price: selPrice(10, 30), quality: 0.7},
				{model: "unknown1", price: selPrice(0, 0)},
				{model: "top", price: selPrice(15, 60), quality: 0.9},
				{model: "d", price: selPrice(1, 3), quality: 0.7},
				{model: "unpriced", quality: 0.7},
				{model: "unknown2"},
			},
			want: "top d a unpriced unknown1 unknown2",
		},
		{
			name: "equal quality and cost keep configured order",
			cands: []selPriced{
				{model: "x", price: selPrice(1, 1), quality: 0.5},
				{model: "y", price: selPrice(1, 1), quality: 0.5},
				{model: "z", quality: 0.5},
				{model: "w", quality: 0.5},
			},
			want: "x y z w",
		},
		{
			name:  "negative and NaN quality are unknown",
			cands: []selPriced{{model: "neg", quality: -1}, {model: "nan", quality: math.NaN()}, {model: "low", quality: 0.01}},
			want:  "low neg nan",
		},
		{name: "none", want: ""},
	}
	s := selLoad(t, "best_quality")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := selCosted(tt.cands...)
			d := s.Select(&strategies.Request{PromptTokens: 500}, cands)
			if got := selModels(cands); got != tt.want {
				t.Errorf("order = %q, want %q", got, tt.want)
			}
			if d.Reason != "best_quality" {
				t.Errorf("reason = %q", d.Reason)
			}
		})
	}
}

func TestBalanced(t *testing.T) {
	// x: quality 0.9, dear (cost 1 after scaling), slow (latency 1);
	// y: quality 0.6, cheap (0), fast (0);
	// z: quality unknown (0.5), unpriced (1), cold (0.5).
	// Default weights: x = 0.45-0.3-0.2 = -0.05, y = 0.3, z = 0.25-0.3-0.1 = -0.15.
	xyz := []selPriced{
		{model: "x", price: selPrice(10, 30), quality: 0.9, lat: 800},
		{model: "y", price: selPrice(0.5, 1.5), quality: 0.6, lat: 200},
		{model: "z"},
	}
	tests := []struct {
		name  string
		s     strategies.Balanced
		cands []selPriced
		want  string
	}{
		{name: "default weights", cands: xyz, want: "y x z"},
		{
			// x = 1.8-0.3-0.2 = 1.3, y = 1.2, z = 1.0-0.3-0.1 = 0.6
			name:  "quality weighs more",
			s:     strategies.Balanced{QualityWeight: selF64(2)},
			cands: xyz, want: "x y z",
		},
		{
			name: "quality only: unknown counts as 0.5",
			s:    strategies.Balanced{QualityWeight: selF64(1), CostWeight: selF64(0), LatencyWeight: selF64(0)},
			cands: []selPriced{
				{model: "lo", quality: 0.3},
				{model: "unknown"},
				{model: "hi", quality: 0.9},
				{model: "half", quality: 0.5},
			},
			want: "hi unknown half lo",
		},
		{
			name: "cost only: unpriced as dear as the dearest",
			s:    strategies.Balanced{QualityWeight: selF64(0), CostWeight: selF64(1), LatencyWeight: selF64(0)},
			cands: []selPriced{
				{model: "unpriced"},
				{model: "dear", price: selPrice(10, 10)},
				{model: "mid", price: selPrice(5, 5)},
				{model: "cheap", price: selPrice(1, 1)},
			},
			want: "cheap mid unpriced dear",
		},
		{
			name: "cost only: one price is the cheapest",
			s:    strategies.Balanced{QualityWeight: selF64(0), CostWeight: selF64(1), LatencyWeight: selF64(0)},
			cands: []selPriced{
				{model: "unpriced"},
				{model: "dear", price: selPrice(1000, 1000)},
			},
			want: "dear unpriced",
		},
		{
			name: "latency only: cold is neutral",
			s:    strategies.Balanced{QualityWeight: selF64(0), CostWeight: selF64(0), LatencyWeight: selF64(1)},
			cands: []selPriced{
				{model: "slow", lat: 300},
				{model: "cold"},
				{model: "mid", lat: 200},
				{model: "fast", lat: 100},
			},
			want: "fast cold mid slow",
		},
		{
			name: "all tied keep configured order",
			cands: []selPriced{
				{model: "a", price: selPrice(1, 1), quality: 0.5, lat: 100},
				{model: "b", price: selPrice(1, 1), quality: 0.5, lat: 100},
				{model: "c", price: selPrice(1, 1), quality: 0.5, lat: 100},
			},
			want: "a b c",
		},
		{
			// With a high min_samples everything is cold; quality decides.
			name: "min_samples makes measurements cold",
			s:    strategies.Balanced{MinSamples: 10, CostWeight: selF64(0)},
			cands: []selPriced{
				{model: "fast", quality: 0.4, lat: 100},
				{model: "slow", quality: 0.8, lat: 900},
			},
			want: "slow fast",
		},
		{name: "one", cands: xyz[:1], want: "x"},
		{name: "none", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := selCosted(tt.cands...)
			d := tt.s.Select(&strategies.Request{PromptTokens: 1000}, cands)
			if got := selModels(cands); got != tt.want {
				t.Errorf("order = %q, want %q", got, tt.want)
			}
			if d.Reason != "balanced" {
				t.Errorf("reason = %q", d.Reason)
			}
		})
	}
}

// TestBalancedProvisionedMatchesZero checks that the provisioned
// defaults and the zero value order alike.
func TestBalancedProvisionedMatchesZero(t *testing.T) {
	provisioned := selLoad(t, "balanced")
	var zero strategies.Balanced
	r := selRand()
	for range 200 {
		a := selRandomCands(r, 12)
		b := append([]strategies.Candidate(nil), a...)
		req := &strategies.Request{PromptTokens: r.IntN(4000)}
		provisioned.Select(req, a)
		zero.Select(req, b)
		if selModels(a) != selModels(b) {
			t.Fatalf("provisioned %q, zero value %q", selModels(a), selModels(b))
		}
	}
}

func TestBalancedStreamLatency(t *testing.T) {
	s := strategies.Balanced{QualityWeight: selF64(0), CostWeight: selF64(0)}
	cands := selNamed("quick-start", "quick-finish")
	cands[0].Stats = upstreams.Stats{LatencyMs: 900, TTFTMs: 50, Samples: 5}
	cands[1].Stats = upstreams.Stats{LatencyMs: 300, TTFTMs: 250, Samples: 5}
	s.Select(&strategies.Request{Stream: true}, cands)
	if got := selModels(cands); got != "quick-start quick-finish" {
		t.Errorf("stream order = %q", got)
	}
	s.Select(&strategies.Request{}, cands)
	if got := selModels(cands); got != "quick-finish quick-start" {
		t.Errorf("non-stream order = %q", got)
	}
}

// TestOrderMatchesReference checks the deterministic strategies, at
// sizes on both sides of the small-sort cutoff and the stack key buffer,
// against plain stable sorts written from the specification.
func TestOrderMatchesReference(t *testing.T) {
	cold := func(v float64, samples int64) bool { return samples < 3 || !(v > 0) || math.IsInf(v, 1) }
	cost := func(req *strategies.Request, c *strategies.Candidate) (float64, bool) {
		v := strategies.Cost(req, c, 256)
		return v, c.Priced && !math.IsNaN(v) && !math.IsInf(v, 0)
	}
	byCost := func(req *strategies.Request, a, b *strategies.Candidate) int {
		ca, oka := cost(req, a)
		cb, okb := cost(req, b)
		switch {
		case oka && okb:
			return cmp.Compare(ca, cb)
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	}
	quality := func(c *strategies.Candidate) float64 { return max(c.Quality, 0) }
	balancedScores := func(req *strategies.Request, cands []strategies.Candidate) map[int]float64 {
		var costs, lats []float64
		for i := range cands {
			if v, ok := cost(req, &cands[i]); ok {
				costs = append(costs, v)
			}
			if v := cands[i].Stats.LatencyMs; !cold(v, cands[i].Stats.Samples) {
				lats = append(lats, v)
			}
		}
		norm := func(v float64, all []float64) float64 {
			lo, hi := slices.Min(all), slices.Max(all)
			if hi == lo {
				return 0
			}
			return (v - lo) / (hi - lo)
		}
		scores := map[int]float64{}
		for i := range cands {
			c := &cands[i]
			q, cn, ln := quality(c), 1.0, 0.5
			if q == 0 {
				q = 0.5
			}
			if v, ok := cost(req, c); ok {
				cn = norm(v, costs)
			}
			if v := c.Stats.LatencyMs; !cold(v, c.Stats.Samples) {
				ln = norm(v, lats)
			}
			scores[pos(*c)] = 0.5*q - 0.3*cn - 0.2*ln
		}
		return scores
	}

	type reference func(req *strategies.Request, cands []strategies.Candidate)
	refs := map[string]reference{
		"least_busy": func(_ *strategies.Request, cands []strategies.Candidate) {
			slices.SortStableFunc(cands, func(a, b strategies.Candidate) int {
				return cmp.Compare(a.Stats.InFlight, b.Stats.InFlight)
			})
		},
		"lowest_latency": func(_ *strategies.Request, cands []strategies.Candidate) {
			slices.SortStableFunc(cands, func(a, b strategies.Candidate) int {
				ca, cb := cold(a.Stats.LatencyMs, a.Stats.Samples), cold(b.Stats.LatencyMs, b.Stats.Samples)
				if ca || cb {
					return -cmp.Compare(selBoolInt(ca), selBoolInt(cb))
				}
				return cmp.Compare(a.Stats.LatencyMs, b.Stats.LatencyMs)
			})
		},
		"highest_throughput": func(_ *strategies.Request, cands []strategies.Candidate) {
			slices.SortStableFunc(cands, func(a, b strategies.Candidate) int {
				ca, cb := cold(a.Stats.TokensPerSecond, a.Stats.Samples), cold(b.Stats.TokensPerSecond, b.Stats.Samples)
				if ca || cb {
					return -cmp.Compare(selBoolInt(ca), selBoolInt(cb))
				}
				return cmp.Compare(b.Stats.TokensPerSecond, a.Stats.TokensPerSecond)
			})
		},
		"cheapest": func(req *strategies.Request, cands []strategies.Candidate) {
			slices.SortStableFunc(cands, func(a, b strategies.Candidate) int {
				if r := byCost(req, &a, &b); r != 0 {
					return r
				}
				return cmp.Compare(quality(&b), quality(&a))
			})
		},
		"best_quality": func(req *strategies.Request, cands []strategies.Candidate) {
			slices.SortStableFunc(cands, func(a, b strategies.Candidate) int {
				if r := cmp.Compare(quality(&b), quality(&a)); r != 0 {
					return r
				}
				return byCost(req, &a, &b)
			})
		},
		"balanced": func(req *strategies.Request, cands []strategies.Candidate) {
			scores := balancedScores(req, cands)
			slices.SortStableFunc(cands, func(a, b strategies.Candidate) int {
				return cmp.Compare(scores[pos(b)], scores[pos(a)])
			})
		},
	}
	r := selRand()
	for name, ref := range refs {
		s := selLoad(t, name)
		if l, ok := s.(*strategies.LowestLatency); ok {
			l.Explore = selF64(0)
		}
		if h, ok := s.(*strategies.HighestThroughput); ok {
			h.Explore = selF64(0)
		}
		for _, n := range []int{2, 5, 16, 17, 32, 33, 100, 500} {
			for range 10 {
				req := &strategies.Request{PromptTokens: r.IntN(3000)}
				got := selRandomCands(r, n)
				want := slices.Clone(got)
				s.Select(req, got)
				ref(req, want)
				if selModels(got) != selModels(want) {
					t.Fatalf("%s, n=%d:\n got %s\nwant %s", name, n, selModels(got), selModels(want))
				}
			}
		}
	}
}

func selBoolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
