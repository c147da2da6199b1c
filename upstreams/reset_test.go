package upstreams

import (
	"testing"
	"time"
)

func TestResetPair(t *testing.T) {
	now := time.Now()
	policy := Policy{Cooldown: time.Minute, FailThreshold: 2}
	p := new(memoryPair)
	p.Finish(Outcome{Result: Succeeded, Timed: true, Total: 100 * time.Millisecond, OutputTokens: 10}, policy, now)
	p.Finish(Outcome{Result: Failed, Timed: true}, policy, now)
	p.Finish(Outcome{Result: Failed, Timed: true}, policy, now)
	if p.Available(now) || p.CooldownUntil().IsZero() {
		t.Fatal("no cooldown after two failures")
	}
	if !ResetPair(p, ResetCooldown) {
		t.Fatal("a memory pair cannot be reset")
	}
	if !p.Available(now) || !p.CooldownUntil().IsZero() {
		t.Error("the cooldown is still on after its reset")
	}
	if s := p.Snapshot(); s.Samples != 3 || s.LatencyMs == 0 {
		t.Errorf("a cooldown reset changed the stats: %+v", s)
	}
	// the count of consecutive failures went with it: one more failure
	// is not yet the threshold
	p.Finish(Outcome{Result: Failed}, policy, now)
	if !p.Available(now) {
		t.Error("one failure after the reset cooled the pair down")
	}
	ResetPair(p, ResetStats)
	if s := p.Snapshot(); s != (Stats{InFlight: s.InFlight}) { // (Finish without Start)
		t.Errorf("stats after their reset: %+v", s)
	}
}
