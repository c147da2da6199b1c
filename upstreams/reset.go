package upstreams

import "time"

// What a reset clears.
const (
	// ResetCooldown ends the pair's cooldown and its count of
	// consecutive failures (a shared pair's also in the fleet).
	ResetCooldown = 1 << iota
	// ResetStats forgets the live stats (latency, time to first token,
	// throughput, error rate) this process measured.
	ResetStats
)

// resetter is a Pair that can be reset; both implementations are.
type resetter interface{ reset(what int) }

// ResetPair clears what (ResetCooldown, ResetStats or both) of pair p,
// as the admin API asks. It reports whether p could be reset.
func ResetPair(p Pair, what int) bool {
	r, ok := p.(resetter)
	if ok {
		r.reset(what)
	}
	return ok
}

// reset implements resetter.
func (p *memoryPair) reset(what int) { p.resetWith(what, nil) }

// resetWith clears what; a cooldown it ends goes to sink (if not nil)
// as a closed one, so a shared pair ends it for the fleet too.
func (p *memoryPair) resetWith(what int, sink healthSink) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if what&ResetCooldown != 0 {
		cooling := !p.cooling().IsZero()
		p.fails, p.until, p.fleet, p.fleetProbe = 0, time.Time{}, time.Time{}, time.Time{}
		if cooling {
			p.changes++
			if sink != nil {
				sink.changed(healthChange{closed: true})
			}
		}
	}
	if what&ResetStats != 0 {
		p.latencyMs, p.ttftMs, p.tps, p.errorRate = avg{}, avg{}, avg{}, avg{}
		p.latencies, p.ttfts = recent{}, recent{}
	}
}

// reset implements resetter: the fleet's stats as last polled are
// forgotten too (the next poll brings the other instances' back).
func (p *sharedPair) reset(what int) {
	p.resetWith(what, p)
	if what&ResetStats != 0 {
		p.others.Store(nil)
	}
}

// Interface guards
var (
	_ resetter = (*memoryPair)(nil)
	_ resetter = (*sharedPair)(nil)
)
