package llmroute

import (
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

// The admin API shows the pair's own state, through a cooldown, its
// half-open probe and the ramp after it, not one derived from the
// cooldown's end alone.
func TestAdminPairHealth(t *testing.T) {
	prov := &upstreams.Provider{Name: "admin-health-test"}
	pair := upstreams.AcquirePair(prov, "m", nil)
	defer upstreams.ReleasePair(prov, "m", nil)
	s := serving{provider: prov, pair: pair}
	policy := upstreams.Policy{Cooldown: 30 * time.Second, FailThreshold: 1, ProbeInterval: time.Second, Ramp: 2 * time.Second}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	check := func(at time.Time, health string, probes, recoveries uint64) {
		t.Helper()
		ap := pairState(s, at)
		if ap.Health != health || ap.Probes != probes || ap.Recoveries != recoveries {
			t.Errorf("at +%v: health %q, probes %d, recoveries %d; want %q, %d, %d", at.Sub(now), ap.Health, ap.Probes, ap.Recoveries, health, probes, recoveries)
		}
	}
	check(now, "healthy", 0, 0)
	pair.Start(now)
	pair.Finish(upstreams.Outcome{Result: upstreams.Failed}, policy, now)
	check(now.Add(500*time.Millisecond), "cooling", 0, 0)
	at := now.Add(time.Second)
	check(at, "half_open", 0, 0)
	if !pair.Start(at) {
		t.Fatal("no probe after the probe interval")
	}
	check(at, "probing", 1, 0)
	pair.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Probe: true}, policy, at)
	check(at.Add(time.Second), "ramping", 1, 1)
	if ap := pairState(s, at.Add(time.Second)); ap.CooldownUntil != nil {
		t.Errorf("a cooldown after the recovery: %v", ap.CooldownUntil)
	}
	check(at.Add(3*time.Second), "healthy", 1, 1)
}
