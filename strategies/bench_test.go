package strategies_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// benchCands makes n candidates that look like a real catalogue: prices
// from free to premium, most priced, most with a quality score, stats
// mostly warm with a few cold ones, varied load and weights.
func benchCands(n int) []strategies.Candidate {
	r := rand.New(rand.NewPCG(42, uint64(n)))
	var providers []*upstreams.Provider
	for _, name := range []string{"openai", "anthropic", "groq", "together", "local"} {
		providers = append(providers, &upstreams.Provider{Name: name})
	}
	cands := make([]strategies.Candidate, n)
	for i := range cands {
		c := &cands[i]
		c.Model = fmt.Sprintf("model-%d", i)
		c.Provider = providers[i%len(providers)]
		if r.IntN(10) > 0 {
			c.Priced = true
			c.InputPrice = []float64{0, 0.05, 0.15, 0.5, 1, 2.5, 3, 5, 10, 15}[r.IntN(10)]
			c.OutputPrice = c.InputPrice * (2 + 3*r.Float64())
		}
		if r.IntN(8) > 0 {
			c.Quality = 0.3 + 0.65*r.Float64()
		}
		c.Context = []int{8192, 32768, 128000, 200000}[r.IntN(4)]
		c.Weight = float64(r.IntN(5))
		samples := int64(r.IntN(200))
		if r.IntN(10) == 0 {
			samples = int64(r.IntN(3)) // cold
		}
		c.Stats = upstreams.Stats{
			LatencyMs:       300 + 3000*r.Float64(),
			TTFTMs:          80 + 900*r.Float64(),
			TokensPerSecond: 20 + 300*r.Float64(),
			ErrorRate:       0.05 * r.Float64(),
			InFlight:        int64(r.IntN(20)),
			Samples:         samples,
		}
	}
	return cands
}

// benchRequest is a typical chat request view.
func benchRequest() *strategies.Request {
	const user = "Write a Go function that parses an RFC 3339 timestamp and explain the edge cases."
	return &strategies.Request{
		Endpoint:     "/chat/completions",
		Model:        "auto",
		Body:         []byte(`{"model":"auto","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"` + user + `"}]}`),
		PromptTokens: 850,
		System:       "You are helpful.",
		LastUser:     user,
		Conversation: "You are helpful.\n" + user,
		Header:       map[string][]string{"Content-Type": {"application/json"}},
	}
}

// BenchmarkSelect measures every registered strategy that can be
// provisioned with its defaults, at 10 and 1000 candidates. Each
// iteration first restores the input order with a plain copy, which is
// part of the measured cost.
func BenchmarkSelect(b *testing.B) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, mi := range caddy.GetModules(strategies.Namespace) {
		s, err := benchProvision(ctx, mi)
		if err != nil {
			b.Logf("skipping %s: %v", mi.ID, err)
			continue
		}
		b.Run(mi.ID.Name(), func(b *testing.B) {
			for _, n := range []int{10, 1000} {
				pristine := benchCands(n)
				work := make([]strategies.Candidate, n)
				req := benchRequest()
				b.Run(fmt.Sprint(n), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						copy(work, pristine)
						s.Select(req, work)
					}
				})
			}
		})
	}
}

// benchProvision instantiates, provisions and validates a strategy with
// its default configuration; modules that need configuration (or are
// not strategies) return an error, and a panic counts as one.
func benchProvision(ctx caddy.Context, mi caddy.ModuleInfo) (s strategies.Strategy, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	mod := mi.New()
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
		return nil, fmt.Errorf("%T is not a Strategy", mod)
	}
	// A strategy that panics on the bench input is skipped too.
	s.Select(benchRequest(), benchCands(10))
	return s, nil
}
