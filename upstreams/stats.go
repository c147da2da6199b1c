package upstreams

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// ewmaAlpha weighs a new sample against the history: about the last ten
// samples matter.
const ewmaAlpha = 0.2

// Stats is the live-stats registry of every provider+model pair. It is
// package state keyed by name, so it survives config reloads.
var Stats = &statsRegistry{}

type statsRegistry struct {
	m sync.Map // key(provider, model) → *PairStats
}

// PairStats are the live stats of one provider+model pair. In-flight
// counting is a lone atomic; the averages share a small mutex, held for
// a few float operations per finished attempt.
type PairStats struct {
	inFlight atomic.Int64

	mu        sync.Mutex
	latencyMs avg
	ttftMs    avg
	tps       avg
	errorRate avg
}

// avg is an exponentially weighted moving average; its first sample is
// taken as is.
type avg struct {
	v float64
	n int64
}

func (a *avg) add(sample float64) {
	if a.n == 0 {
		a.v = sample
	} else {
		a.v += ewmaAlpha * (sample - a.v)
	}
	a.n++
}

// Pair returns the stats of a pair, creating them on first use.
func (s *statsRegistry) Pair(provider, model string) *PairStats {
	k := key(provider, model)
	if v, ok := s.m.Load(k); ok {
		return v.(*PairStats)
	}
	v, _ := s.m.LoadOrStore(k, new(PairStats))
	return v.(*PairStats)
}

// Reset forgets all stats; for tests.
func (s *statsRegistry) Reset() { s.m.Clear() }

// Start counts an attempt in flight; call the returned func when it ends.
func (p *PairStats) Start() func() {
	p.inFlight.Add(1)
	return func() { p.inFlight.Add(-1) }
}

// Outcome is what one finished attempt measured.
type Outcome struct {
	// Failed is true for connect errors, timeouts and retryable statuses.
	Failed bool
	// Stream tells whether TTFT (stream) or total latency is measured.
	Stream bool
	// FirstByte is the time to the first body byte, Total the whole time.
	FirstByte, Total time.Duration
	// OutputTokens is the usage's completion tokens, 0 if unknown.
	OutputTokens int64
}

// Observe folds one finished attempt into the averages.
func (p *PairStats) Observe(o Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	errSample := 0.0
	if o.Failed {
		errSample = 1
	}
	p.errorRate.add(errSample)
	if o.Failed {
		return
	}
	if o.Stream && o.FirstByte > 0 {
		p.ttftMs.add(ms(o.FirstByte))
	} else if !o.Stream && o.Total > 0 {
		p.latencyMs.add(ms(o.Total))
	}
	gen := o.Total
	if o.Stream {
		gen -= o.FirstByte
	}
	if o.OutputTokens > 0 && gen > 0 {
		p.tps.add(float64(o.OutputTokens) / gen.Seconds())
	}
}

// Snapshot returns the current stats.
func (p *PairStats) Snapshot() strategies.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strategies.Stats{
		LatencyMs:       p.latencyMs.v,
		TTFTMs:          p.ttftMs.v,
		TokensPerSecond: p.tps.v,
		ErrorRate:       p.errorRate.v,
		InFlight:        p.inFlight.Load(),
		Samples:         p.errorRate.n,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
