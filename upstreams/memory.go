package upstreams

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ewmaAlpha weighs a new sample against the history: about the last ten
// samples matter.
const ewmaAlpha = 0.2

// memoryPair is the in-memory Pair of one process. The in-flight count
// is a lone atomic; everything else shares a small mutex, held for a few
// comparisons and float operations per attempt.
type memoryPair struct {
	inFlight atomic.Int64
	// unhealthy: the provider's health checks found no upstream
	// available when last told (HealthChecked).
	unhealthy atomic.Bool

	mu      sync.Mutex
	fails   int       // consecutive failures
	until   time.Time // end of the cooldown; zero: none since the last success
	probing bool      // a half-open probe is under way

	// Fast recovery (see Policy): the time from which a probe may go
	// through before the cooldown ends (zero: none), and the ramp that
	// returns traffic after a cooldown closed: its start, its length
	// and the credit of requests it has let through.
	probeAt  time.Time
	hinted   bool // the cooldown is one a provider's Retry-After asked for
	rampFrom time.Time
	rampFor  time.Duration
	credit   float64
	// Counts of half-open probes begun and of cooldowns a success
	// closed, for observers (PairInfo).
	probes, recoveries uint64

	// For a shared pair (shared.go), the fleet's cooldown as last
	// polled, zero: none; and a count of the health changes made by
	// Finish, which tells the poll that its reading may be older than
	// them. Always zero in a memory-only pair.
	fleet   time.Time
	changes uint64
	// fleetProbe is when a probe may go through the fleet's cooldown
	// (the probe time of the instance that set it); zero: not before
	// its end (a Retry-After cooldown, or none).
	fleetProbe time.Time

	latencyMs avg
	ttftMs    avg
	tps       avg
	errorRate avg
	// The recent times the averages latencyMs and ttftMs took in, for
	// Percentile.
	latencies, ttfts recent
}

// recent is a ring of the last PercentileSamples times, in ms.
type recent struct {
	v [PercentileSamples]float64
	n int // samples taken
}

func (r *recent) add(ms float64) {
	r.v[r.n%PercentileSamples] = ms
	r.n++
}

// quantile returns the q-quantile of the samples kept (nearest rank),
// or false with fewer than MinPercentileSamples. It sorts its copy of
// the samples, so it needs no lock.
func (r recent) quantile(q float64) (time.Duration, bool) {
	n := min(r.n, PercentileSamples)
	if n < MinPercentileSamples {
		return 0, false
	}
	s := r.v[:n]
	slices.Sort(s)
	i := min(max(int(math.Ceil(q*float64(n)))-1, 0), n-1)
	return time.Duration(s[i] * float64(time.Millisecond)), true
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

// cooling returns the end of the cooldown that applies: the later of
// this process's and the fleet's; p.mu is held.
func (p *memoryPair) cooling() time.Time {
	if p.fleet.After(p.until) {
		return p.fleet
	}
	return p.until
}

// halfOpen reports whether a probe may go through at now: each
// cooldown that applies, this process's and the fleet's, ran out or
// (unless a provider's Retry-After asked for it) has run for its probe
// interval; p.mu is held.
func (p *memoryPair) halfOpen(now time.Time) bool {
	if !p.cooling().After(now) {
		return true
	}
	over := func(until, probeAt time.Time) bool {
		return !until.After(now) || !probeAt.IsZero() && !probeAt.After(now)
	}
	return over(p.until, p.probeAt) && over(p.fleet, p.fleetProbe)
}

// Available implements Pair. While a ramp runs, a growing share of the
// requests finds the pair available (from rampFloor of them to all),
// so traffic returns gradually to a pair that recovered.
func (p *memoryPair) Available(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until := p.cooling()
	if until.IsZero() {
		return p.ramp(now)
	}
	return p.halfOpen(now) && !p.probing
}

// rampFloor is the share of the requests a ramp lets through at its
// start.
const rampFloor = 0.25

// ramp reports whether the ramp, if one runs at now, lets this request
// through; p.mu is held.
func (p *memoryPair) ramp(now time.Time) bool {
	if p.rampFor <= 0 {
		return true
	}
	elapsed := now.Sub(p.rampFrom)
	if elapsed >= p.rampFor || elapsed < 0 {
		p.rampFor = 0
		return true
	}
	p.credit += max(rampFloor, float64(elapsed)/float64(p.rampFor))
	if p.credit < 1 {
		return false
	}
	p.credit--
	return true
}

// Start implements Pair.
func (p *memoryPair) Start(now time.Time) bool {
	p.inFlight.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cooling().IsZero() || !p.halfOpen(now) || p.probing {
		return false
	}
	p.probing = true
	p.probes++
	return true
}

// Finish implements Pair.
func (p *memoryPair) Finish(o Outcome, policy Policy, now time.Time) {
	p.finish(o, policy, now, nil)
}

// healthChange is what a finished attempt changed in a pair's health:
// a cooldown it opened or extended (until), or one it closed.
type healthChange struct {
	until   time.Time
	probeAt time.Time // when a probe may go through it (zero: at its end)
	closed  bool
}

// healthSink is told of the changes in a pair's health.
type healthSink interface{ changed(healthChange) }

// finish does Finish's work. A change in the health goes to sink, if
// not nil, while p.mu is still held: in the order of the changes.
func (p *memoryPair) finish(o Outcome, policy Policy, now time.Time, sink healthSink) {
	var c healthChange
	p.inFlight.Add(-1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if o.Probe {
		p.probing = false
	}
	switch o.Result {
	case Succeeded:
		c.closed = !p.cooling().IsZero()
		p.fails, p.until, p.fleet, p.probeAt, p.fleetProbe = 0, time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if c.closed {
			p.recoveries++
			if !p.hinted {
				// (A provider that asked for a pause has had it.)
				p.rampFrom, p.rampFor, p.credit = now, policy.Ramp, 0
			}
		}
		p.hinted = false
	case Failed:
		before := p.cooling()
		p.fail(o.RetryAfter, policy, now)
		if p.until.After(before) {
			c.until, c.probeAt = p.until, p.probeAt
		}
	default:
		return // says nothing about the pair
	}
	if o.Timed {
		p.observe(o)
	}
	if c.closed || !c.until.IsZero() {
		p.changes++
		if sink != nil {
			sink.changed(c)
		}
	}
}

// fail counts a consecutive failure. A retryAfter above zero starts a
// cooldown of that length at once; otherwise the pair cools down once
// the threshold is reached, twice as long for each failure beyond it.
func (p *memoryPair) fail(retryAfter time.Duration, policy Policy, now time.Time) {
	p.fails++
	d := retryAfter
	if d <= 0 && policy.FailThreshold > 0 && p.fails >= policy.FailThreshold && policy.Cooldown > 0 {
		d = policy.Cooldown
		for i := policy.FailThreshold; i < p.fails && d < MaxCooldown; i++ {
			d *= 2
		}
	}
	if d <= 0 {
		return
	}
	if until := now.Add(min(d, MaxCooldown)); until.After(p.until) {
		p.until = until
	}
	p.rampFor = 0
	// A cooldown the provider asked for is honoured whole; one of the
	// gateway's own is probed once every probe interval.
	p.probeAt = time.Time{}
	p.hinted = retryAfter > 0
	if !p.hinted && policy.ProbeInterval > 0 {
		p.probeAt = now.Add(policy.ProbeInterval)
	}
}

// observe folds a timed attempt into the averages; p.mu is held.
func (p *memoryPair) observe(o Outcome) {
	failed := o.Result == Failed
	errSample := 0.0
	if failed {
		errSample = 1
	}
	p.errorRate.add(errSample)
	if failed {
		return
	}
	if o.Stream && o.FirstByte > 0 {
		p.ttftMs.add(ms(o.FirstByte))
		p.ttfts.add(ms(o.FirstByte))
	} else if !o.Stream && o.Total > 0 {
		p.latencyMs.add(ms(o.Total))
		p.latencies.add(ms(o.Total))
	}
	gen := o.Total
	if o.Stream {
		gen -= o.FirstByte
	}
	if o.OutputTokens > 0 && gen > 0 {
		p.tps.add(float64(o.OutputTokens) / gen.Seconds())
	}
}

// Snapshot implements Pair.
func (p *memoryPair) Snapshot() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		LatencyMs:       p.latencyMs.v,
		TTFTMs:          p.ttftMs.v,
		TokensPerSecond: p.tps.v,
		ErrorRate:       p.errorRate.v,
		InFlight:        p.inFlight.Load(),
		Samples:         p.errorRate.n,
	}
}

// HealthChecked implements Pair.
func (p *memoryPair) HealthChecked(up bool, now time.Time) {
	// (Read first: this runs for every candidate of every request, and a
	// read does not take the cache line a write would.)
	if !up {
		if !p.unhealthy.Load() {
			p.unhealthy.Store(true)
		}
		return
	}
	if !p.unhealthy.Load() || !p.unhealthy.CompareAndSwap(true, false) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.until.After(now) && !p.hinted && (p.probeAt.IsZero() || p.probeAt.After(now)) {
		p.probeAt = now
	}
	if p.fleet.After(now) && p.fleetProbe.After(now) {
		p.fleetProbe = now
	}
}

// Percentile implements Pair.
func (p *memoryPair) Percentile(stream bool, q float64) (time.Duration, bool) {
	p.mu.Lock()
	r := p.latencies
	if stream {
		r = p.ttfts
	}
	p.mu.Unlock() // (sorted outside the lock every request to the pair takes)
	return r.quantile(q)
}

// health describes the pair's health at now for observers.
func (p *memoryPair) health(now time.Time) (state string, probes, recoveries uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.probing:
		state = StateProbing
	case !p.cooling().IsZero() && p.halfOpen(now):
		state = StateHalfOpen
	case !p.cooling().IsZero():
		state = StateOpen
	case p.rampFor > 0 && now.Sub(p.rampFrom) < p.rampFor:
		state = StateRamping
	default:
		state = StateClosed
	}
	return state, p.probes, p.recoveries
}

// CooldownUntil implements Pair.
func (p *memoryPair) CooldownUntil() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cooling()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Interface guards
var _ Pair = (*memoryPair)(nil)
