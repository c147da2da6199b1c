package strategies_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// selIndexed tags each candidate with its position (in UpstreamModel,
// which strategies never read), which makes the slice the configured
// order, and returns it.
func selIndexed(cands ...strategies.Candidate) []strategies.Candidate {
	for i := range cands {
		cands[i].UpstreamModel = strconv.Itoa(i)
	}
	return cands
}

// pos is the position selIndexed gave c.
func pos(c strategies.Candidate) int {
	n, err := strconv.Atoi(c.UpstreamModel)
	if err != nil {
		panic("candidate not tagged by selIndexed")
	}
	return n
}

// selModels returns the models of cands, in order, space-separated.
func selModels(cands []strategies.Candidate) string {
	var b strings.Builder
	for i, c := range cands {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(c.Model)
	}
	return b.String()
}

// selNamed returns candidates with the given models and nothing else.
func selNamed(models ...string) []strategies.Candidate {
	cands := make([]strategies.Candidate, len(models))
	for i, m := range models {
		cands[i].Model = m
	}
	return selIndexed(cands...)
}

func selF64(v float64) *float64 { return &v }

// selRand is a seeded source, so that failures reproduce.
func selRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// selLoad instantiates and provisions the strategy module name (its
// last ID label) with its defaults, as Caddy would.
func selLoad(t testing.TB, name string) strategies.Strategy {
	t.Helper()
	mi, err := caddy.GetModule(strategies.Namespace + "." + name)
	if err != nil {
		t.Fatal(err)
	}
	mod := mi.New()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if p, ok := mod.(caddy.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if v, ok := mod.(caddy.Validator); ok {
		if err := v.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	s, ok := mod.(strategies.Strategy)
	if !ok {
		t.Fatalf("%s is a %T, not a Strategy", name, mod)
	}
	return s
}

// selBuiltin are the strategies of this package's simple and measured
// kinds, by module name.
var selBuiltin = []string{
	"fallback", "random", "weighted", "round_robin", "least_busy",
	"lowest_latency", "highest_throughput", "cheapest", "best_quality", "balanced",
}

func TestBuiltinModulesRegistered(t *testing.T) {
	for _, name := range selBuiltin {
		mi, err := caddy.GetModule(strategies.Namespace + "." + name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := mi.ID.Name(); got != name {
			t.Errorf("module name = %q, want %q", got, name)
		}
	}
}

// selRandomCands makes n candidates with varied attributes and stats,
// some unpriced, some of unknown quality, some cold, some tied.
func selRandomCands(r *rand.Rand, n int) []strategies.Candidate {
	cands := make([]strategies.Candidate, n)
	for i := range cands {
		c := &cands[i]
		c.Model = fmt.Sprintf("m%d", i)
		c.Provider = &upstreams.Provider{Name: fmt.Sprintf("p%d", r.IntN(3))}
		if r.IntN(5) > 0 {
			c.Priced = true
			c.InputPrice = float64(r.IntN(20)) / 2
			c.OutputPrice = c.InputPrice * 4
		}
		if r.IntN(4) > 0 {
			c.Quality = float64(r.IntN(10)) / 10
		}
		c.Weight = float64(r.IntN(4))
		c.Stats = upstreams.Stats{
			LatencyMs:       float64(r.IntN(5) * 100),
			TTFTMs:          float64(r.IntN(5) * 30),
			TokensPerSecond: float64(r.IntN(5) * 20),
			InFlight:        int64(r.IntN(4)),
			Samples:         int64(r.IntN(6)),
		}
	}
	return selIndexed(cands...)
}

// TestSelectOnlyReorders checks that every strategy keeps the multiset
// of candidates: the same candidates, each once, unchanged.
func TestSelectOnlyReorders(t *testing.T) {
	r := selRand()
	for _, name := range selBuiltin {
		s := selLoad(t, name)
		for _, n := range []int{0, 1, 2, 3, 10, 16, 17, 32, 33, 63, 64, 65, 200} {
			for _, stream := range []bool{false, true} {
				req := &strategies.Request{PromptTokens: r.IntN(5000), Stream: stream, MaxTokens: int64(r.IntN(2) * 100)}
				for range 5 {
					pristine := selRandomCands(r, n)
					work := slices.Clone(pristine)
					d := s.Select(req, work)
					if d.Reason == "" {
						t.Errorf("%s: empty reason", name)
					}
					slices.SortFunc(work, func(a, b strategies.Candidate) int { return pos(a) - pos(b) })
					if !reflect.DeepEqual(work, pristine) {
						t.Fatalf("%s, n=%d: candidates changed, not just reordered", name, n)
					}
				}
			}
		}
	}
}

func TestFallback(t *testing.T) {
	cands := selNamed("a", "b", "c")
	cands[2].Stats.InFlight = -1
	d := selLoad(t, "fallback").Select(&strategies.Request{}, cands)
	if got := selModels(cands); got != "a b c" {
		t.Errorf("order = %q, want %q", got, "a b c")
	}
	if d.Reason != "fallback" || d.Params != nil {
		t.Errorf("decision = %+v", d)
	}
}

func TestLeastBusy(t *testing.T) {
	tests := []struct {
		name     string
		inFlight []int64
		want     string
	}{
		{"ascending", []int64{3, 1, 2}, "b c a"},
		{"ties keep configured order", []int64{3, 1, 2, 1, 0}, "e b d c a"},
		{"all equal", []int64{2, 2, 2}, "a b c"},
		{"one", []int64{5}, "a"},
		{"none", nil, ""},
	}
	s := selLoad(t, "least_busy")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands := selNamed(strings.Fields("a b c d e")[:len(tt.inFlight)]...)
			for i, n := range tt.inFlight {
				cands[i].Stats.InFlight = n
			}
			d := s.Select(&strategies.Request{}, cands)
			if got := selModels(cands); got != tt.want {
				t.Errorf("order = %q, want %q", got, tt.want)
			}
			if d.Reason != "least_busy" {
				t.Errorf("reason = %q", d.Reason)
			}
		})
	}
}

// selShares runs s draws times on fresh copies of cands and returns,
// per model, the share of draws (0..100) in which it came first.
func selShares(s strategies.Strategy, cands []strategies.Candidate, draws int, check func([]strategies.Candidate)) map[string]float64 {
	counts := map[string]int{}
	work := make([]strategies.Candidate, len(cands))
	for range draws {
		copy(work, cands)
		s.Select(&strategies.Request{}, work)
		counts[work[0].Model]++
		if check != nil {
			check(work)
		}
	}
	shares := map[string]float64{}
	for _, c := range cands {
		shares[c.Model] = 100 * float64(counts[c.Model]) / float64(draws)
	}
	return shares
}

func selCheckShares(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for m, w := range want {
		if g := got[m]; g < w-5 || g > w+5 {
			t.Errorf("%s first in %.1f%% of draws, want %.1f%% ± 5", m, g, w)
		}
	}
}

func TestRandom(t *testing.T) {
	s := selLoad(t, "random")
	cands := selNamed("a", "b", "c", "d")
	// Uniform over positions, not just first: count each model at each position.
	const draws = 10000
	var at [4][4]int
	work := make([]strategies.Candidate, len(cands))
	for range draws {
		copy(work, cands)
		if d := s.Select(&strategies.Request{}, work); d.Reason != "random" {
			t.Fatalf("reason = %q", d.Reason)
		}
		for p, c := range work {
			at[pos(c)][p]++
		}
	}
	for m := range at {
		for pos, n := range at[m] {
			if share := 100 * float64(n) / draws; share < 20 || share > 30 {
				t.Errorf("%s at position %d in %.1f%% of draws, want 25%% ± 5", cands[m].Model, pos, share)
			}
		}
	}
	// Degenerate sizes.
	for _, n := range []int{0, 1} {
		c := selNamed("a", "b")[:n]
		s.Select(&strategies.Request{}, c)
	}
}

func TestWeighted(t *testing.T) {
	s := selLoad(t, "weighted")

	t.Run("proportional", func(t *testing.T) {
		cands := selNamed("a", "b", "c", "d", "zero")
		for i, w := range []float64{1, 2, 3, 4, 0} {
			cands[i].Weight = w
		}
		got := selShares(s, cands, 10000, func(work []strategies.Candidate) {
			if work[len(work)-1].Model != "zero" {
				t.Fatalf("zero weight not last: %s", selModels(work))
			}
		})
		selCheckShares(t, got, map[string]float64{"a": 10, "b": 20, "c": 30, "d": 40, "zero": 0})
	})

	t.Run("second place without replacement", func(t *testing.T) {
		// With weights 1 and 8 and 1, b is first 80% of the time, and
		// when it is, a and c share second place evenly.
		cands := selNamed("a", "b", "c")
		for i, w := range []float64{1, 8, 1} {
			cands[i].Weight = w
		}
		second := map[string]int{}
		work := make([]strategies.Candidate, 3)
		const draws = 10000
		for range draws {
			copy(work, cands)
			s.Select(&strategies.Request{}, work)
			second[work[1].Model]++
		}
		// P(b second) = P(a first)·8/9 + P(c first)·8/9 = 0.2·8/9 ≈ 17.8%.
		for m, want := range map[string]float64{"a": 41.1, "b": 17.8, "c": 41.1} {
			if g := 100 * float64(second[m]) / draws; g < want-5 || g > want+5 {
				t.Errorf("%s second in %.1f%%, want %.1f%% ± 5", m, g, want)
			}
		}
	})

	t.Run("non-positive weights last in configured order", func(t *testing.T) {
		cands := selNamed("z1", "a", "z2", "b", "z3")
		for i, w := range []float64{0, 1, -1, 1, 0} {
			cands[i].Weight = w
		}
		got := selShares(s, cands, 4000, func(work []strategies.Candidate) {
			if tail := selModels(work[2:]); tail != "z1 z2 z3" {
				t.Fatalf("tail = %q, want %q", tail, "z1 z2 z3")
			}
		})
		selCheckShares(t, got, map[string]float64{"a": 50, "b": 50})
	})

	t.Run("tiny weight still before disabled ones", func(t *testing.T) {
		cands := selNamed("zero", "tiny", "one")
		for i, w := range []float64{0, 1e-310, 1} {
			cands[i].Weight = w
		}
		selShares(s, cands, 500, func(work []strategies.Candidate) {
			if got := selModels(work); got != "one tiny zero" {
				t.Fatalf("order = %q, want %q", got, "one tiny zero")
			}
		})
	})

	t.Run("all zero is uniform", func(t *testing.T) {
		cands := selNamed("a", "b", "c", "d")
		got := selShares(s, cands, 10000, nil)
		selCheckShares(t, got, map[string]float64{"a": 25, "b": 25, "c": 25, "d": 25})
	})

	t.Run("many candidates", func(t *testing.T) {
		// Past the stack buffer: one heavy candidate among 99 light
		// ones and 20 disabled ones.
		names := make([]string, 120)
		for i := range names {
			names[i] = fmt.Sprintf("m%d", i)
		}
		cands := selNamed(names...)
		for i := range cands {
			switch {
			case i == 57:
				cands[i].Weight = 99
			case i%6 == 0:
				cands[i].Weight = 0
			default:
				cands[i].Weight = 1
			}
		}
		got := selShares(s, cands, 4000, func(work []strategies.Candidate) {
			prev := -1
			for _, c := range work[100:] {
				if c.Weight != 0 || pos(c) <= prev {
					t.Fatalf("tail not the disabled ones in configured order: %s", selModels(work[100:]))
				}
				prev = pos(c)
			}
		})
		selCheckShares(t, got, map[string]float64{"m57": 50})
	})

	t.Run("reason and degenerate sizes", func(t *testing.T) {
		for _, n := range []int{0, 1, 2} {
			c := selNamed("a", "b")[:n]
			if d := s.Select(&strategies.Request{}, c); d.Reason != "weighted" {
				t.Errorf("reason = %q", d.Reason)
			}
		}
	})
}

func TestRoundRobin(t *testing.T) {
	s := selLoad(t, "round_robin")
	cands := selNamed("a", "b", "c")
	work := make([]strategies.Candidate, 3)
	for i, want := range []string{"a b c", "b c a", "c a b", "a b c", "b c a"} {
		copy(work, cands)
		d := s.Select(&strategies.Request{}, work)
		if got := selModels(work); got != want {
			t.Errorf("request %d: order = %q, want %q", i, got, want)
		}
		if d.Reason != "round_robin" {
			t.Errorf("reason = %q", d.Reason)
		}
	}

	// Concurrent requests still spread exactly evenly.
	s = selLoad(t, "round_robin")
	cands = selNamed("a", "b", "c", "d")
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			work := make([]strategies.Candidate, len(cands))
			local := map[string]int{}
			for range 1000 {
				copy(work, cands)
				s.Select(&strategies.Request{}, work)
				local[work[0].Model]++
			}
			mu.Lock()
			for m, n := range local {
				counts[m] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, c := range cands {
		if counts[c.Model] != 2000 {
			t.Errorf("%s first %d times, want 2000", c.Model, counts[c.Model])
		}
	}
}
