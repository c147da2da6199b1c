package strategies

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(Adaptive{})
}

// Adaptive defaults.
const (
	DefaultAdaptiveCostWeight   = 0.5
	DefaultAdaptiveBuckets      = 3
	DefaultAdaptivePrior        = 20
	DefaultAdaptiveWindow       = 1000
	DefaultAdaptiveFailWeight   = 1
	adaptiveContextDifficulty   = "difficulty"
	adaptiveContextNone         = "none"
	adaptivePolicyThompson      = "thompson"
	adaptivePolicyUCB           = "ucb"
	adaptiveStateKeyPrefix      = "route\x00"
	adaptiveNamedStateKeyPrefix = "key\x00"
)

// Adaptive is a strategy that learns online which model to call: a
// contextual bandit with Thompson sampling. In each context (by default
// the prompt's difficulty bucket), each model's quality (0..1) has a
// Beta posterior, starting from its registry quality with the weight of
// prior_weight observations (uniform when it has none). For each request it
// draws a quality q from each candidate's posterior and ranks the
// candidates by
//
//	q − cost_weight · log(cost / lowest) / log(highest / lowest)
//
// where cost is the request's estimated cost on the candidate (as for
// cheapest; an unpriced candidate counts as the most expensive) and
// lowest and highest are the candidates' extremes: the cheapest pays
// nothing, the dearest cost_weight, and each doubling of the price the
// same share between them. So it optimises quality per cost, not quality
// alone: cost_weight 0 learns the best model, higher values trade
// quality for price. Drawing from
// the posterior explores models it knows little about and exploits the
// ones it knows are good, as the evidence grows.
//
// It learns from explicit feedback (Observe: a score 0..1 for a model in
// a context, e.g. from the feedback endpoint) and from implicit signals
// of each attempt (Outcome): a failed attempt (an error, a timeout, a
// broken stream) is a score of 0 with weight fail_weight; with
// slow_after set, a success slower than it is a score of 0 with half
// that weight. What it learned belongs to its route and survives config
// reloads (state_key, when set, names the state instead, and configs
// that use the same state_key share it). The state is held in this
// process, or, when the handler's state is in Redis (`state redis`), in
// Redis, shared by every instance on it (see AdaptiveRedis: each sees
// the others' evidence within about two sync intervals).
//
// The decision reads "adaptive=0.81 context=d1 n=14": the posterior mean
// quality of the pick, the context, and the evidence behind the pick.
type Adaptive struct {
	// CostWeight is λ, the quality given up to go from the cheapest
	// candidate to the dearest (on a log scale of cost). Default: 0.5.
	CostWeight *float64 `json:"cost_weight,omitempty"`

	// Policy is how it balances exploration against exploitation:
	// `thompson` (default: Thompson sampling, a quality drawn from each
	// posterior) or `ucb` (deterministic: each posterior's mean plus
	// an upper-confidence bonus, UCB1-Tuned).
	Policy string `json:"policy,omitempty"`

	// Context is what a context is: `difficulty` (default: the bucket
	// of the difficulty strategy's score, with its default settings) or
	// `none` (one context).
	Context string `json:"context,omitempty"`

	// Buckets is the number of difficulty buckets. Default: 3.
	Buckets int `json:"buckets,omitempty"`

	// PriorWeight is how many observations a model's registry quality
	// counts as (a model without one starts from a uniform prior, worth
	// 2). Default: 20.
	PriorWeight *float64 `json:"prior_weight,omitempty"`

	// Window is the most weight of evidence an arm keeps; older evidence
	// is discounted beyond it. Default: 1000.
	Window float64 `json:"window,omitempty"`

	// FailWeight is the weight of a failed attempt as a score of 0.
	// Default: 1; 0 ignores failures.
	FailWeight *float64 `json:"fail_weight,omitempty"`

	// SlowAfter, when set, makes a success slower than it count as a
	// score of 0 with half fail_weight.
	SlowAfter caddy.Duration `json:"slow_after,omitempty"`

	// StateKey names the learned state, instead of the route; configs
	// with the same state_key share it.
	StateKey string `json:"state_key,omitempty"`

	// Seed seeds the sampling (for reproducible evaluation); 0 seeds it
	// at random.
	Seed int64 `json:"seed,omitempty"`

	// ExpectedOutput is the number of output tokens assumed for the cost
	// estimate; the client's max_tokens lowers it. Default: 256.
	ExpectedOutput int `json:"expected_output,omitempty"`

	lambda, prior, failW float64
	difficulty           *Difficulty
	store                AdaptiveStore
	key                  string       // the pool key held, if any
	shared               *SharedState // the fleet's Redis, if bound to it
	release              func()       // drops the pool reference held

	rng *lockedRand
}

// lockedRand is a source of randomness for concurrent Selects.
type lockedRand struct {
	sync.Mutex
	*rand.Rand
}

// CaddyModule returns the Caddy module information.
func (Adaptive) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  Namespace + ".adaptive",
		New: func() caddy.Module { return new(Adaptive) },
	}
}

// Provision validates a and sets it up with a state of its own (the
// handler then binds it to its route's state with BindRoute).
func (a *Adaptive) Provision(_ caddy.Context) error {
	if err := a.Validate(); err != nil {
		return err
	}
	a.lambda = probabilityOr(a.CostWeight, DefaultAdaptiveCostWeight)
	a.prior = probabilityOr(a.PriorWeight, DefaultAdaptivePrior)
	a.failW = probabilityOr(a.FailWeight, DefaultAdaptiveFailWeight)
	if a.Context == "" {
		a.Context = adaptiveContextDifficulty
	}
	if a.Policy == "" {
		a.Policy = adaptivePolicyThompson
	}
	if a.Buckets == 0 {
		a.Buckets = DefaultAdaptiveBuckets
	}
	if a.Window == 0 {
		a.Window = DefaultAdaptiveWindow
	}
	if a.ExpectedOutput == 0 {
		a.ExpectedOutput = DefaultExpectedOutput
	}
	if a.Context == adaptiveContextDifficulty {
		// Only its score is used; a tier makes it a valid strategy.
		a.difficulty = &Difficulty{Tiers: []DifficultyTier{{Models: []string{"any"}}}}
		if err := a.difficulty.Provision(caddy.Context{}); err != nil {
			return err
		}
	}
	seed := uint64(a.Seed)
	if a.Seed == 0 {
		seed = rand.Uint64()
	}
	a.rng = &lockedRand{Rand: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if a.StateKey != "" {
		a.bind(adaptiveNamedStateKeyPrefix + a.StateKey)
	} else {
		a.store = NewAdaptiveMemory(a.Window)
	}
	return nil
}

// probabilityOr is *p, or def when p is nil.
func probabilityOr(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

// Validate ensures that a's configuration is valid.
func (a *Adaptive) Validate() error {
	for _, f := range []struct {
		name string
		v    *float64
	}{{"cost_weight", a.CostWeight}, {"prior_weight", a.PriorWeight}, {"fail_weight", a.FailWeight}} {
		if err := checkWeight("adaptive: "+f.name, f.v); err != nil {
			return err
		}
	}
	switch a.Context {
	case "", adaptiveContextDifficulty, adaptiveContextNone:
	default:
		return fmt.Errorf("adaptive: context must be difficulty or none, got %q", a.Context)
	}
	switch a.Policy {
	case "", adaptivePolicyThompson, adaptivePolicyUCB:
	default:
		return fmt.Errorf("adaptive: policy must be thompson or ucb, got %q", a.Policy)
	}
	if a.Buckets < 0 || a.Buckets > 100 {
		return fmt.Errorf("adaptive: buckets must be from 1 to 100, got %d", a.Buckets)
	}
	if !(a.Window >= 0 && a.Window <= math.MaxFloat64) {
		return fmt.Errorf("adaptive: window must be a finite number of at least 0, got %g", a.Window)
	}
	if a.SlowAfter < 0 {
		return errors.New("adaptive: slow_after must not be negative")
	}
	if a.ExpectedOutput < 0 {
		return fmt.Errorf("adaptive: expected_output must not be negative, got %d", a.ExpectedOutput)
	}
	return nil
}

// RouteBinder is a strategy whose state belongs to the route that uses
// it: the handler calls BindRoute with the route's name once it has
// loaded the strategy, before any request.
type RouteBinder interface {
	BindRoute(route string)
}

// BindRoute implements RouteBinder: a uses the state of route (unless
// state_key names another), shared with the same route of the previous
// and next configs.
func (a *Adaptive) BindRoute(route string) {
	if a.StateKey == "" && a.key == "" {
		a.bind(adaptiveStateKeyPrefix + route)
	}
}

func (a *Adaptive) bind(key string) {
	a.key = key
	if a.shared != nil {
		a.store = acquireAdaptiveRedis(a.shared, key, a.Window)
		pk := adaptiveRedisKey(a.shared, key)
		a.release = func() { _, _ = adaptiveRedisStates.Delete(pk) }
		return
	}
	a.store = acquireAdaptive(key, a.Window)
	a.release = func() { releaseAdaptive(key) }
}

// BindShared implements SharedBinder: a keeps its state (its route's, or
// state_key's) in s, shared with every instance that uses the same
// Redis and prefix, instead of in this process.
func (a *Adaptive) BindShared(s *SharedState) {
	if s == nil || s.Client == nil {
		return
	}
	key := a.key
	_ = a.Cleanup()
	a.shared = s
	if key != "" {
		a.bind(key)
	}
}

// Cleanup implements caddy.CleanerUpper: it drops a's reference to its
// route's state, which goes with the last config that uses it.
func (a *Adaptive) Cleanup() error {
	if a.release != nil {
		a.release()
		a.release = nil
		a.key = ""
	}
	return nil
}

// Store returns the state a learns into.
func (a *Adaptive) Store() AdaptiveStore { return a.store }

// Learner is a strategy that learns from outcomes: the handler reports
// each attempt's outcome, and explicit feedback on a request reaches
// it with the context its decision was made in.
type Learner interface {
	// ContextOf is the context of a request, as Select sees it.
	ContextOf(req *Request) string
	// Observe learns an explicit score (0..1) of model in context.
	Observe(context, model string, score float64)
	// Outcome learns the implicit signal of an attempt on model.
	Outcome(req *Request, model string, sig Signal)
}

// Signal is what an attempt says of a model without explicit feedback.
type Signal struct {
	// Failed: the attempt failed on the upstream's side (an error
	// status, a timeout, a broken stream).
	Failed bool
	// Latency is the attempt's duration.
	Latency time.Duration
}

// ContextOf implements Learner: "d0" … for the difficulty buckets, or
// "all".
func (a *Adaptive) ContextOf(req *Request) string {
	if a.difficulty == nil || req == nil {
		return "all"
	}
	s := a.difficulty.Assess(req).Score
	b := min(max(int(s*float64(a.Buckets)), 0), a.Buckets-1)
	return "d" + strconv.Itoa(b)
}

// Observe implements Learner.
func (a *Adaptive) Observe(context, model string, score float64) {
	a.store.Observe(context, model, score, 1)
}

// Outcome implements Learner.
func (a *Adaptive) Outcome(req *Request, model string, sig Signal) {
	switch {
	case sig.Failed:
		a.store.Observe(a.ContextOf(req), model, 0, a.failW)
	case a.SlowAfter > 0 && sig.Latency > time.Duration(a.SlowAfter):
		a.store.Observe(a.ContextOf(req), model, 0, a.failW/2)
	}
}

// Select implements Strategy.
func (a *Adaptive) Select(req *Request, cands []Candidate) Decision {
	ctx := a.ContextOf(req)
	if len(cands) == 0 {
		return Decision{Reason: "adaptive context=" + ctx}
	}
	models := make([]string, len(cands))
	costs := make([]float64, len(cands))
	lo, hi := math.Inf(1), 0.0
	for i := range cands {
		models[i] = cands[i].Model
		if cands[i].Priced {
			costs[i] = Cost(req, &cands[i], a.ExpectedOutput)
			lo, hi = min(lo, costs[i]), max(hi, costs[i])
		} else {
			costs[i] = math.Inf(1)
		}
	}
	arms := a.store.Arms(make([]AdaptiveArm, 0, len(cands)), ctx, models)
	type ranked struct {
		c               Candidate
		u, mean, al, be float64
		n               float64
	}
	rs := make([]ranked, len(cands))
	total := 0.0 // the weight of every candidate's posterior (UCB)
	for i := range cands {
		al, be := a.posterior(&cands[i], arms[i])
		rs[i] = ranked{c: cands[i], mean: al / (al + be), al: al, be: be, n: arms[i].N()}
		total += al + be
	}
	if a.Policy == adaptivePolicyUCB {
		for i := range rs {
			rs[i].u = ucbIndex(rs[i].mean, rs[i].al+rs[i].be, total)
		}
	} else {
		a.rng.Lock()
		for i := range rs {
			rs[i].u = sampleBeta(a.rng.Rand, rs[i].al, rs[i].be)
		}
		a.rng.Unlock()
	}
	for i := range rs {
		rs[i].u -= a.lambda * CostPenalty(costs[i], lo, hi)
	}
	slices.SortStableFunc(rs, func(x, y ranked) int {
		switch {
		case x.u > y.u:
			return -1
		case x.u < y.u:
			return 1
		}
		return 0
	})
	for i := range rs {
		cands[i] = rs[i].c
	}
	b := make([]byte, 0, 48)
	b = append(b, "adaptive="...)
	b = strconv.AppendFloat(b, rs[0].mean, 'f', 2, 64)
	b = append(b, " context="...)
	b = append(b, ctx...)
	b = append(b, " n="...)
	b = strconv.AppendFloat(b, math.Round(rs[0].n), 'f', 0, 64)
	return Decision{Reason: string(b)}
}

// posterior returns the Beta posterior of c's quality: its registry
// quality worth prior_weight observations (a uniform prior worth 2 when
// it has none) plus the arm's evidence.
func (a *Adaptive) posterior(c *Candidate, arm AdaptiveArm) (al, be float64) {
	q0, w := c.Quality, a.prior
	if q0 <= 0 || q0 > 1 {
		q0, w = 0.5, min(w, 2) // unknown: a uniform prior
	}
	al = max(w*q0+arm.Alpha, 1e-3)
	be = max(w*(1-q0)+arm.Beta, 1e-3)
	return al, be
}

// ucbIndex is UCB1-Tuned's index of an arm of posterior mean quality
// mean and weight n among arms of total weight total: the mean plus
// sqrt(ln(total)/n · min(1/4, V)), where V is the Bernoulli variance
// mean·(1−mean) plus sqrt(2·ln(total)/n). Its bonus shrinks as the arm's
// evidence grows, and for arms near 0 or 1 faster than UCB1's.
func ucbIndex(mean, n, total float64) float64 {
	if n <= 0 {
		return math.Inf(1)
	}
	l := math.Log(max(total, 1))
	v := mean*(1-mean) + math.Sqrt(2*l/n)
	return mean + math.Sqrt(l/n*min(0.25, v))
}

// CostPenalty places cost on a log scale from the cheapest (lo: 0) to
// the dearest (hi: 1) of the candidates, so that each doubling of the
// price costs the same quality whatever the prices' range. An unknown
// (infinite) cost is 1; with one price or none, 0.
func CostPenalty(cost, lo, hi float64) float64 {
	switch {
	case math.IsInf(cost, 1):
		return 1
	case !(lo > 0) || !(hi > lo) || math.IsInf(hi, 1):
		if cost > lo && lo >= 0 && hi > lo {
			return cost / hi // a free candidate among priced ones
		}
		return 0
	}
	return min(max(math.Log(cost/lo)/math.Log(hi/lo), 0), 1)
}

// Interface guards.
var (
	_ Strategy           = (*Adaptive)(nil)
	_ Learner            = (*Adaptive)(nil)
	_ RouteBinder        = (*Adaptive)(nil)
	_ SharedBinder       = (*Adaptive)(nil)
	_ caddy.Provisioner  = (*Adaptive)(nil)
	_ caddy.Validator    = (*Adaptive)(nil)
	_ caddy.CleanerUpper = (*Adaptive)(nil)
)
