package upstreams

import (
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Pair is the live state of one provider+model pair: its health (the
// consecutive failures, the cooldown and the half-open probe), its live
// stats and its in-flight count. There is one Pair per pair identity
// (see PairKey), shared by every configuration that uses the pair, so it
// survives config reloads; it is released when no configuration uses
// it. The in-memory implementation is the default; a shared one (for a
// fleet, see Shared) sits behind the same interface. No method waits on
// I/O.
type Pair interface {
	// Available reports whether the pair may be tried at now: it is
	// not cooling down and, once a cooldown has run out (half-open), no
	// probe is under way.
	Available(now time.Time) bool
	// Start counts an attempt in flight. It reports whether the attempt
	// is the half-open probe of a pair whose cooldown ran out; the
	// answer goes back to Finish.
	Start(now time.Time) (probe bool)
	// Finish ends an attempt begun with Start: it folds the outcome
	// into the stats and the health, under policy.
	Finish(o Outcome, policy Policy, now time.Time)
	// Snapshot returns the live stats.
	Snapshot() Stats
	// Percentile returns the q-quantile (0..1) of the recent times of
	// the attempts that answered, measured as the averages of Stats
	// are: to the first token for streams, the whole time otherwise.
	// It is false until MinPercentileSamples are known. (A shared
	// pair's are this process's alone.)
	Percentile(stream bool, q float64) (time.Duration, bool)
	// CooldownUntil returns the end of the current cooldown; a zero or
	// past time means none.
	CooldownUntil() time.Time
	// HealthChecked tells the pair whether its provider's upstreams are
	// available by Caddy's health checks (active and passive) at now.
	// When they are again after none was, a cooldown of the gateway's
	// own lets a probe through at once (one a Retry-After asked for is
	// still waited out).
	HealthChecked(up bool, now time.Time)
}

// Result is what an attempt says about the pair's health.
type Result int

const (
	// Neutral attempts say nothing about the pair: the client went away,
	// or the answer was the client's error.
	Neutral Result = iota
	// Succeeded attempts answered; they close the circuit.
	Succeeded
	// Failed attempts hit a connect error, a timeout, a retryable status
	// or a stream that broke.
	Failed
)

// Outcome is what one finished attempt measured.
type Outcome struct {
	Result Result
	// Probe is Start's answer for this attempt.
	Probe bool
	// RetryAfter is the wait a 429 asked for (0: none); it starts a
	// cooldown of that length at once.
	RetryAfter time.Duration
	// Timed is set when the attempt's times say something about the
	// model's speed (a count of tokens, say, does not).
	Timed bool
	// Stream tells whether TTFT (stream) or total latency is measured.
	Stream bool
	// FirstByte is the time to the first body byte, Total the whole time.
	FirstByte, Total time.Duration
	// OutputTokens is the usage's completion tokens, 0 if unknown.
	OutputTokens int64
}

// Policy is how failures turn into cooldowns: a pair cools down for
// Cooldown after FailThreshold consecutive failures, and each failed
// half-open probe after that doubles it, up to MaxCooldown.
//
// With ProbeInterval above zero, a single probe goes through once it
// has passed since the failure that opened or extended the cooldown,
// without waiting for the cooldown's end (a cooldown a 429's
// Retry-After asked for is waited out). With Ramp above zero, a success
// that closes such a cooldown (not a Retry-After one) starts a ramp: for Ramp, a share of the
// requests that grows from a quarter to all finds the pair available.
type Policy struct {
	Cooldown      time.Duration
	FailThreshold int
	ProbeInterval time.Duration
	Ramp          time.Duration
}

// The states of a pair's health, as PairInfo shows them.
const (
	StateClosed   = "closed"    // available
	StateOpen     = "open"      // cooling down
	StateHalfOpen = "half-open" // a probe may go through
	StateProbing  = "probing"   // a probe is under way
	StateRamping  = "ramping"   // recovered; traffic returns gradually
)

// PercentileSamples is how many recent times a pair keeps for
// Percentile, of streams and of other answers each;
// MinPercentileSamples how many it needs.
const (
	PercentileSamples    = 128
	MinPercentileSamples = 20
)

// MaxCooldown caps every cooldown, including one asked for by a
// provider's Retry-After header.
const MaxCooldown = 10 * time.Minute

// Stats are live measurements of one provider+model pair.
type Stats struct {
	// LatencyMs is the EWMA of total request time for non-stream
	// requests; TTFTMs the EWMA of the time to first token for streams.
	LatencyMs, TTFTMs float64
	// TokensPerSecond is the EWMA of output tokens per second.
	TokensPerSecond float64
	// ErrorRate is the EWMA of failed attempts (0..1).
	ErrorRate float64
	// InFlight is the number of attempts under way.
	InFlight int64
	// Samples is the number of finished attempts measured, failed ones
	// included.
	Samples int64
}

// pairs holds the state of every pair in use, by PairKey, across
// configurations (as Caddy keeps its upstream hosts).
var pairs = caddy.NewUsagePool()

// PairKey identifies the pair of the provider p and the model it calls
// upstreamModel.
func PairKey(p *Provider, upstreamModel string) string {
	return p.stateKey + "\x00" + upstreamModel
}

// AcquirePair returns the state of the pair of p and upstreamModel,
// creating it on first use, and takes a reference to it; release it with
// ReleasePair when the configuration that acquired it is cleaned up.
//
// With shared nil the state is this process's alone. Otherwise its
// cooldowns and stats are shared through shared's Redis (see Shared):
// such a pair is another pool entry than the memory-only one of the
// same identity, and than one shared through another Shared, so a
// reload that changes where the state lives never hands one config's
// kind of pair to the other.
func AcquirePair(p *Provider, upstreamModel string, shared *Shared) Pair {
	key := PairKey(p, upstreamModel)
	v, _, _ := pairs.LoadOrNew(poolKey(key, shared), func() (caddy.Destructor, error) {
		pp := &pooledPair{key: key, provider: p.Name, model: upstreamModel}
		if shared == nil {
			pp.Pair = new(memoryPair)
		} else {
			pp.shared = shared.newPair(key)
			pp.Pair = pp.shared
		}
		return pp, nil
	})
	return v.(*pooledPair).Pair
}

// poolKey is the pool's key of the pair key shared through shared.
func poolKey(key string, shared *Shared) string {
	if shared == nil {
		return key
	}
	return key + "\x00redis:" + shared.id
}

// pooledPair is a pair's entry in the pool: its state and whose it is.
type pooledPair struct {
	key, provider, model string
	Pair
	shared *sharedPair // the state, if shared
}

// Destruct implements caddy.Destructor: a shared pair stops being
// shared (the last one stops its Shared's goroutine).
func (pp *pooledPair) Destruct() error {
	if pp.shared != nil {
		pp.shared.shared.remove(pp.shared)
	}
	return nil
}

// ReleasePair drops a reference taken by AcquirePair with the same
// arguments; the state goes with the last one.
func ReleasePair(p *Provider, upstreamModel string, shared *Shared) {
	_, _ = pairs.Delete(poolKey(PairKey(p, upstreamModel), shared))
}

// PairInfo describes one pair in use.
type PairInfo struct {
	// Key is the pair's identity (PairKey).
	Key string
	// Provider is the provider's name and Model the upstream model.
	Provider, Model string
	// Shared tells whether the state is shared through Redis; then
	// CooldownUntil and Stats include the fleet's, as last polled.
	Shared bool
	// CooldownUntil is the end of the current cooldown, if any.
	CooldownUntil time.Time
	// Stats are the live stats.
	Stats Stats
	// State is the health's state (StateClosed, ...); Probes counts the
	// half-open probes begun and Recoveries the cooldowns a success
	// closed.
	State              string
	Probes, Recoveries uint64
}

// Pairs lists the state of every pair in use.
func Pairs() []PairInfo {
	var out []PairInfo
	pairs.Range(func(k, v any) bool {
		pp := v.(*pooledPair)
		info := PairInfo{Key: pp.key, Provider: pp.provider, Model: pp.model,
			Shared: pp.shared != nil, CooldownUntil: pp.CooldownUntil(), Stats: pp.Snapshot()}
		if h, ok := pp.Pair.(interface {
			health(time.Time) (string, uint64, uint64)
		}); ok {
			info.State, info.Probes, info.Recoveries = h.health(time.Now())
		}
		out = append(out, info)
		return true
	})
	return out
}
