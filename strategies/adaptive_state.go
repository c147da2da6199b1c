package strategies

import (
	"math"
	"math/rand/v2"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// AdaptiveArm is what the adaptive strategy knows of one model in one
// context: a Beta posterior of its quality (0..1), as the pseudo-counts
// of good (Alpha) and bad (Beta) outcomes observed beyond the prior.
type AdaptiveArm struct {
	Alpha, Beta float64
}

// N is the arm's weight of evidence.
func (a AdaptiveArm) N() float64 { return a.Alpha + a.Beta }

// AdaptiveStore holds the adaptive strategy's arms, by context and
// model. It must be safe for concurrent use: the memory store
// (NewAdaptiveMemory), and AdaptiveRedis, which shares it through Redis.
type AdaptiveStore interface {
	// Arms returns the arms of models in context ctx, in the order of
	// models (the zero arm for one never observed), appended to dst.
	Arms(dst []AdaptiveArm, ctx string, models []string) []AdaptiveArm
	// Observe adds an outcome of quality q (0..1) with weight w to the
	// arm of model in context ctx.
	Observe(ctx, model string, q, w float64)
}

// AdaptiveMemory is the in-process AdaptiveStore. Old evidence is
// discounted once an arm holds more than its window, so that the
// strategy keeps following a model whose quality changes.
type AdaptiveMemory struct {
	mu     sync.Mutex
	arms   map[adaptiveKey]*AdaptiveArm
	window float64
}

type adaptiveKey struct{ ctx, model string }

// NewAdaptiveMemory returns an empty memory store whose arms keep at most
// window observations' weight (0: unlimited).
func NewAdaptiveMemory(window float64) *AdaptiveMemory {
	return &AdaptiveMemory{arms: map[adaptiveKey]*AdaptiveArm{}, window: window}
}

// Arms implements AdaptiveStore.
func (m *AdaptiveMemory) Arms(dst []AdaptiveArm, ctx string, models []string) []AdaptiveArm {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range models {
		var a AdaptiveArm
		if p := m.arms[adaptiveKey{ctx, name}]; p != nil {
			a = *p
		}
		dst = append(dst, a)
	}
	return dst
}

// Observe implements AdaptiveStore.
func (m *AdaptiveMemory) Observe(ctx, model string, q, w float64) {
	if !(q >= 0 && q <= 1) || !(w > 0 && w <= math.MaxFloat64) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := adaptiveKey{ctx, model}
	a := m.arms[k]
	if a == nil {
		a = new(AdaptiveArm)
		m.arms[k] = a
	}
	a.Alpha += w * q
	a.Beta += w * (1 - q)
	if n := a.N(); m.window > 0 && n > m.window {
		f := m.window / n
		a.Alpha *= f
		a.Beta *= f
	}
}

// adaptiveStates holds the adaptive strategies' stores in use, by route,
// across configurations (as upstreams.AcquirePair holds pair state), so
// that what a route learned survives a config reload.
var adaptiveStates = caddy.NewUsagePool()

type pooledAdaptive struct{ *AdaptiveMemory }

func (pooledAdaptive) Destruct() error { return nil }

// acquireAdaptive returns the store of key, creating it on first use,
// and takes a reference to it; releaseAdaptive drops it.
func acquireAdaptive(key string, window float64) *AdaptiveMemory {
	v, _, _ := adaptiveStates.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledAdaptive{NewAdaptiveMemory(window)}, nil
	})
	return v.(pooledAdaptive).AdaptiveMemory
}

func releaseAdaptive(key string) { _, _ = adaptiveStates.Delete(key) }

// sampleBeta draws from Beta(a, b), a and b > 0.
func sampleBeta(r *rand.Rand, a, b float64) float64 {
	x := sampleGamma(r, a)
	y := sampleGamma(r, b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// sampleGamma draws from Gamma(k, 1) by Marsaglia and Tsang's method.
func sampleGamma(r *rand.Rand, k float64) float64 {
	if k < 1 {
		// Gamma(k) = Gamma(k+1) · U^(1/k).
		return sampleGamma(r, k+1) * math.Pow(r.Float64(), 1/k)
	}
	d := k - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
