package upstreams

import (
	"sync"
	"testing"
	"time"
)

// fail finishes one failed attempt on p at now.
func fail(p Pair, retryAfter time.Duration, policy Policy, now time.Time) {
	probe := p.Start(now)
	p.Finish(Outcome{Result: Failed, Probe: probe, RetryAfter: retryAfter}, policy, now)
}

func TestPairCooldownThreshold(t *testing.T) {
	p := new(memoryPair)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	policy := Policy{Cooldown: 30 * time.Second, FailThreshold: 3}
	base := policy.Cooldown

	if u := p.CooldownUntil(); !u.IsZero() || !p.Available(now) {
		t.Fatalf("fresh pair cooling until %v", u)
	}
	// Below the threshold nothing cools down.
	for i := 1; i <= 2; i++ {
		fail(p, 0, policy, now)
		if u := p.CooldownUntil(); !u.IsZero() {
			t.Fatalf("failure %d: cooldown until %v", i, u)
		}
	}
	// Reaching it starts the base cooldown; each failed probe after
	// that doubles it, up to MaxCooldown.
	for i, want := range []time.Duration{
		base, 2 * base, 4 * base, 8 * base, 16 * base, MaxCooldown, MaxCooldown,
	} {
		now = now.Add(time.Hour) // the previous cooldown is over: a probe
		fail(p, 0, policy, now)
		if got := p.CooldownUntil().Sub(now); got != want {
			t.Errorf("failure %d: cooldown %v, want %v", i+3, got, want)
		}
		if p.Available(now.Add(want - time.Nanosecond)) {
			t.Errorf("failure %d: available during the cooldown", i+3)
		}
	}
	// Success closes the circuit and forgets the failures.
	now = now.Add(time.Hour)
	probe := p.Start(now)
	p.Finish(Outcome{Result: Succeeded, Probe: probe}, policy, now)
	if u := p.CooldownUntil(); !u.IsZero() || !p.Available(now) {
		t.Errorf("cooling until %v after a success", u)
	}
	fail(p, 0, policy, now)
	if u := p.CooldownUntil(); !u.IsZero() {
		t.Errorf("first failure after a success cooled down until %v", u)
	}
}

func TestPairRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	policy := Policy{Cooldown: 30 * time.Second, FailThreshold: 3}

	// A Retry-After starts a cooldown at once, below the threshold.
	p := new(memoryPair)
	fail(p, 5*time.Second, policy, now)
	if got := p.CooldownUntil().Sub(now); got != 5*time.Second {
		t.Errorf("Retry-After 5s: cooldown %v", got)
	}
	// At the threshold it replaces the base cooldown.
	q := new(memoryPair)
	fail(q, 0, policy, now)
	fail(q, 0, policy, now)
	fail(q, 2*time.Second, policy, now)
	if got := q.CooldownUntil().Sub(now); got != 2*time.Second {
		t.Errorf("Retry-After 2s at the threshold: cooldown %v, want 2s", got)
	}
	// It is capped, and a shorter one does not cut a running cooldown
	// short.
	r := new(memoryPair)
	fail(r, time.Hour, policy, now)
	fail(r, time.Second, policy, now)
	if got := r.CooldownUntil().Sub(now); got != MaxCooldown {
		t.Errorf("Retry-After 1h then 1s: cooldown %v, want %v", got, MaxCooldown)
	}
	// Without threshold or base, only Retry-After cools down.
	for _, pol := range []Policy{{Cooldown: 30 * time.Second}, {FailThreshold: 1}} {
		s := new(memoryPair)
		fail(s, 0, pol, now)
		if u := s.CooldownUntil(); !u.IsZero() {
			t.Errorf("policy %+v: cooldown until %v", pol, u)
		}
	}
}

// Once a cooldown runs out the pair is half-open: one attempt probes it,
// and until that probe ends the pair is not offered to others.
func TestPairHalfOpenProbe(t *testing.T) {
	p := new(memoryPair)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	policy := Policy{Cooldown: time.Minute, FailThreshold: 1}
	fail(p, 0, policy, now)
	if p.Available(now.Add(30 * time.Second)) {
		t.Fatal("available while cooling down")
	}
	if p.Start(now.Add(30 * time.Second)) {
		t.Fatal("an attempt during the cooldown was taken as the probe")
	}
	p.Finish(Outcome{Result: Neutral}, policy, now.Add(30*time.Second))

	later := now.Add(2 * time.Minute)
	if !p.Available(later) {
		t.Fatal("not available once the cooldown ran out")
	}
	if !p.Start(later) {
		t.Fatal("the first attempt after the cooldown is not the probe")
	}
	if p.Available(later) {
		t.Error("available to others while the probe is under way")
	}
	if p.Start(later) {
		t.Error("a second concurrent attempt was taken as a probe too")
	}
	p.Finish(Outcome{Result: Neutral}, policy, later) // the second one
	// A probe that says nothing (the client went away) frees the slot
	// and leaves the pair half-open.
	p.Finish(Outcome{Result: Neutral, Probe: true}, policy, later)
	if !p.Available(later) {
		t.Fatal("not half-open after a neutral probe")
	}
	// A failed probe doubles the cooldown.
	fail(p, 0, policy, later)
	if got := p.CooldownUntil().Sub(later); got != 2*time.Minute {
		t.Errorf("after a failed probe: cooldown %v, want 2m", got)
	}
	// A successful probe closes the circuit.
	end := later.Add(3 * time.Minute)
	probe := p.Start(end)
	p.Finish(Outcome{Result: Succeeded, Probe: probe}, policy, end)
	if !probe || !p.CooldownUntil().IsZero() || !p.Available(end) {
		t.Errorf("probe %v, cooldown until %v after a successful probe", probe, p.CooldownUntil())
	}
	if got := p.Snapshot().InFlight; got != 0 {
		t.Errorf("in flight %d after every attempt finished", got)
	}
}

func TestPairStats(t *testing.T) {
	p := new(memoryPair)
	now := time.Now()
	policy := Policy{Cooldown: time.Minute, FailThreshold: 3}
	p.Start(now)
	if got := p.Snapshot().InFlight; got != 1 {
		t.Fatalf("in flight %d, want 1", got)
	}
	p.Finish(Outcome{Result: Succeeded, Timed: true, Total: 100 * time.Millisecond, OutputTokens: 50}, policy, now)
	p.Start(now)
	p.Finish(Outcome{Result: Succeeded, Timed: true, Stream: true, FirstByte: 20 * time.Millisecond, Total: 520 * time.Millisecond, OutputTokens: 100}, policy, now)
	p.Start(now)
	p.Finish(Outcome{Result: Failed, Timed: true}, policy, now)
	p.Start(now)
	p.Finish(Outcome{Result: Neutral, Timed: true, Total: time.Hour}, policy, now) // not measured
	p.Start(now)
	p.Finish(Outcome{Result: Succeeded, Total: time.Hour}, policy, now) // untimed
	s := p.Snapshot()
	if s.Samples != 3 || s.LatencyMs != 100 || s.TTFTMs != 20 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
	if want := 500.0 + ewmaAlpha*(200-500); s.TokensPerSecond != want {
		t.Errorf("tokens per second %v, want %v", s.TokensPerSecond, want)
	}
	if want := ewmaAlpha * 1; s.ErrorRate != want {
		t.Errorf("error rate %v, want %v", s.ErrorRate, want)
	}
}

func TestPairConcurrent(t *testing.T) {
	p := new(memoryPair)
	policy := Policy{Cooldown: time.Millisecond, FailThreshold: 2}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				now := time.Now()
				probe := p.Start(now)
				r := Result((i + j) % 3)
				p.Finish(Outcome{Result: r, Probe: probe, Timed: true, Total: time.Millisecond}, policy, now)
				p.Available(now)
				p.Snapshot()
			}
		})
	}
	wg.Wait()
	if got := p.Snapshot().InFlight; got != 0 {
		t.Errorf("in flight %d after every attempt finished", got)
	}
}

func TestPairFastRecovery(t *testing.T) {
	policy := Policy{Cooldown: 30 * time.Second, FailThreshold: 1, ProbeInterval: time.Second, Ramp: 2 * time.Second}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	p := new(memoryPair)
	state := func(at time.Time) string { s, _, _ := p.health(at); return s }

	fail(p, 0, policy, now)
	if p.Available(now.Add(999*time.Millisecond)) || state(now.Add(999*time.Millisecond)) != StateOpen {
		t.Fatal("available before the probe interval")
	}
	// Once the probe interval passed, one probe goes through, well
	// before the cooldown's end.
	now = now.Add(time.Second)
	if !p.Available(now) || state(now) != StateHalfOpen {
		t.Fatalf("not half-open after the probe interval (%s)", state(now))
	}
	if !p.Start(now) {
		t.Fatal("the first attempt after the probe interval is no probe")
	}
	if p.Available(now) || p.Start(now) || state(now) != StateProbing {
		t.Fatal("a second probe at once")
	}
	p.Finish(Outcome{Result: Failed, Probe: true}, policy, now)
	// A failed probe: the next one after another interval.
	if p.Available(now.Add(500 * time.Millisecond)) {
		t.Fatal("available right after a failed probe")
	}
	now = now.Add(time.Second)
	if !p.Start(now) {
		t.Fatal("no second probe")
	}
	p.Finish(Outcome{Result: Succeeded, Probe: true}, policy, now)
	if s, probes, recoveries := p.health(now); s != StateRamping || probes != 2 || recoveries != 1 || !p.CooldownUntil().IsZero() {
		t.Fatalf("after a successful probe: %s, %d probes, %d recoveries, cooling until %v", s, probes, recoveries, p.CooldownUntil())
	}
	// The ramp: a quarter of the requests at its start, all at its end.
	admitted := 0
	for range 100 {
		if p.Available(now.Add(10 * time.Millisecond)) {
			admitted++
		}
	}
	if admitted < 20 || admitted > 35 {
		t.Errorf("%d of 100 requests admitted at the ramp's start, want about 25", admitted)
	}
	admitted = 0
	for range 100 {
		if p.Available(now.Add(1500 * time.Millisecond)) {
			admitted++
		}
	}
	if admitted < 70 || admitted > 80 {
		t.Errorf("%d of 100 requests admitted at 3/4 of the ramp, want about 75", admitted)
	}
	if !p.Available(now.Add(2*time.Second)) || state(now.Add(2*time.Second)) != StateClosed {
		t.Error("the ramp did not end")
	}

	// A cooldown the provider asked for (Retry-After) is waited out.
	q := new(memoryPair)
	fail(q, 10*time.Second, policy, now)
	if q.Available(now.Add(5 * time.Second)) {
		t.Error("a Retry-After cooldown was probed early")
	}
	if !q.Available(now.Add(10 * time.Second)) {
		t.Error("not half-open after the Retry-After cooldown")
	}
}

// A cooldown a provider's Retry-After asked for ends without a ramp.
func TestPairNoRampAfterRetryAfter(t *testing.T) {
	policy := Policy{Cooldown: 30 * time.Second, FailThreshold: 1, ProbeInterval: time.Second, Ramp: 2 * time.Second}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	p := new(memoryPair)
	fail(p, 500*time.Millisecond, policy, now)
	now = now.Add(time.Second)
	probe := p.Start(now)
	p.Finish(Outcome{Result: Succeeded, Probe: probe}, policy, now)
	if s, _, recoveries := p.health(now); s != StateClosed || recoveries != 1 {
		t.Fatalf("state %s, %d recoveries after a Retry-After cooldown closed", s, recoveries)
	}
	for range 10 {
		if !p.Available(now) {
			t.Fatal("a request held back after a Retry-After cooldown")
		}
	}
}

// Percentile reads the recent times the averages took in: streams'
// times to first token and other answers' whole times apart, failures
// left out, nothing until MinPercentileSamples, and only the last
// PercentileSamples.
func TestPercentile(t *testing.T) {
	p := new(memoryPair)
	now := time.Now()
	ok := func(stream bool, d time.Duration) Outcome {
		return Outcome{Result: Succeeded, Timed: true, Stream: stream, FirstByte: d, Total: 2 * d}
	}
	for i := range MinPercentileSamples - 1 {
		p.Finish(ok(true, time.Duration(i+1)*time.Millisecond), Policy{}, now)
	}
	if _, known := p.Percentile(true, 0.95); known {
		t.Fatal("a percentile before MinPercentileSamples")
	}
	p.Finish(ok(true, 20*time.Millisecond), Policy{}, now)
	p.Finish(Outcome{Result: Failed, Timed: true, Stream: true, FirstByte: time.Hour}, Policy{}, now)
	if d, known := p.Percentile(true, 0.95); !known || d != 19*time.Millisecond {
		t.Errorf("p95 of 1..20ms: %v %v, want 19ms", d, known)
	}
	if d, known := p.Percentile(true, 0.5); !known || d != 10*time.Millisecond {
		t.Errorf("p50 of 1..20ms: %v %v, want 10ms", d, known)
	}
	if _, known := p.Percentile(false, 0.95); known {
		t.Error("streams' times counted as whole times")
	}
	for range PercentileSamples {
		p.Finish(ok(true, time.Second), Policy{}, now)
	}
	if d, _ := p.Percentile(true, 0); d != time.Second {
		t.Errorf("the smallest of the last %d: %v, want 1s", PercentileSamples, d)
	}
	for range MinPercentileSamples {
		p.Finish(ok(false, 5*time.Millisecond), Policy{}, now)
	}
	if d, known := p.Percentile(false, 0.95); !known || d != 10*time.Millisecond {
		t.Errorf("whole times: %v %v, want 10ms", d, known)
	}
}
