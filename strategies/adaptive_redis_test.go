package strategies

import (
	"math"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
	"github.com/caddy-llm-route/llmroute/internal/testclock"
)

// sharedOn returns a SharedState on its own client of srv, as another
// instance of the fleet would have.
func sharedOn(t *testing.T, srv *redistest.Server) *SharedState {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return &SharedState{Client: c, Prefix: "test:", Timeout: 5 * time.Second, Interval: 10 * time.Millisecond}
}

// waitArm waits until s holds want for model m in context ctx.
func waitArm(t *testing.T, s AdaptiveStore, ctx, m string, want AdaptiveArm) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.Arms(nil, ctx, []string{m})[0]
		if math.Abs(got.Alpha-want.Alpha) < 1e-9 && math.Abs(got.Beta-want.Beta) < 1e-9 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("arm %s/%s: %+v, want %+v", ctx, m, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two adaptive strategies on two clients of one Redis (two instances of
// a fleet) learn together: each sees its own evidence at once and the
// other's once exchanged, and the sums are the fleet's; another state
// key is not shared, and the window discounts the shared sums.
func TestAdaptiveRedisShares(t *testing.T) {
	srv := redistest.Start(t)
	one := newAdaptive(t, `{"context":"none","state_key":"fleet","seed":1}`)
	two := newAdaptive(t, `{"context":"none","state_key":"fleet","seed":2}`)
	other := newAdaptive(t, `{"context":"none","state_key":"elsewhere","seed":3}`)
	one.BindShared(sharedOn(t, srv))
	two.BindShared(sharedOn(t, srv))
	other.BindShared(sharedOn(t, srv))
	if _, ok := one.Store().(*AdaptiveRedis); !ok {
		t.Fatalf("store %T, want the Redis store", one.Store())
	}

	for range 5 {
		one.Observe("all", "b", 1)
	}
	// Its own evidence at once, before any exchange.
	if got := one.Store().Arms(nil, "all", []string{"b"})[0]; got.Alpha != 5 {
		t.Fatalf("own evidence: %+v, want alpha 5", got)
	}
	for range 3 {
		two.Observe("all", "b", 0)
	}
	two.Observe("all", "a", 0.5)
	want := AdaptiveArm{Alpha: 5, Beta: 3}
	waitArm(t, one.Store(), "all", "b", want)
	waitArm(t, two.Store(), "all", "b", want)
	waitArm(t, one.Store(), "all", "a", AdaptiveArm{Alpha: 0.5, Beta: 0.5})
	if got := other.Store().Arms(nil, "all", []string{"b"})[0]; got.N() != 0 {
		t.Errorf("another state key sees the evidence: %+v", got)
	}

	// The window (1000 by default) bounds the shared sums.
	for range 1200 {
		two.Observe("all", "c", 1)
	}
	waitArm(t, one.Store(), "all", "c", AdaptiveArm{Alpha: 1000})
}

// A strategy bound to Redis learns from the fleet: evidence observed on
// one instance makes the other pick the better arm.
func TestAdaptiveRedisSteersTheOther(t *testing.T) {
	srv := redistest.Start(t)
	teacher := newAdaptive(t, `{"context":"none","state_key":"steer","cost_weight":0,"seed":1}`)
	learner := newAdaptive(t, `{"context":"none","state_key":"steer","cost_weight":0,"seed":2}`)
	teacher.BindShared(sharedOn(t, srv))
	learner.BindShared(sharedOn(t, srv))
	for range 200 {
		teacher.Observe("all", "a", 0)
		teacher.Observe("all", "b", 1)
	}
	waitArm(t, learner.Store(), "all", "b", AdaptiveArm{Alpha: 200})
	req := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	for range 50 {
		cs := banditCands()[:2]
		learner.Select(&req, cs)
		if cs[0].Model != "b" {
			t.Fatalf("picked %s after the fleet learned b is better", cs[0].Model)
		}
	}
}

// While Redis cannot be reached, the evidence stays with the instance:
// it is seen at once, kept for later (not lost, not counted twice), and
// each failed exchange is counted.
func TestAdaptiveRedisUnreachable(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	s := NewAdaptiveRedis(&SharedState{Client: c, Prefix: "test:", Timeout: 50 * time.Millisecond, Interval: 5 * time.Millisecond}, "down", 0)
	defer s.Close()
	s.Observe("all", "a", 1, 2)
	deadline := time.Now().Add(30 * time.Second)
	for s.Errors() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no failed exchange counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Arms(nil, "all", []string{"a"})[0]; got.Alpha != 2 || got.Beta != 0 {
		t.Errorf("after failed exchanges: %+v, want the evidence once (alpha 2)", got)
	}
	// Invalid input is ignored.
	s.Observe("all", "a", 2, 1)
	s.Observe("all", "a\x00b", 1, 1)
	if got := s.Arms(nil, "all", []string{"a"})[0]; got.Alpha != 2 {
		t.Errorf("invalid observations counted: %+v", got)
	}
}

// While Redis is down the exchanges back off, each wait twice the last
// up to 16 intervals, and the failures are counted and logged once;
// once Redis is back (empty, as after a crash) the evidence kept
// meanwhile reaches it, the exchanges run every interval again, and the
// recovery is logged.
func TestAdaptiveRedisBacksOff(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	core, logs := observer.New(zapcore.InfoLevel)
	clock := testclock.New()
	s := NewAdaptiveRedis(&SharedState{Client: c, Prefix: "test:", Timeout: 5 * time.Second, Interval: time.Second,
		Logger: zap.New(core), After: clock.After}, "backoff", 0)
	defer s.Close()
	next := func(want time.Duration) {
		t.Helper()
		if got := clock.Next(t); got != want {
			t.Fatalf("after %d failed exchanges the store waits %v, want %v", s.Errors(), got, want)
		}
	}

	next(time.Second)
	srv.Kill()
	s.Observe("all", "a", 1, 2)
	for _, want := range []time.Duration{1, 2, 4, 8, 16, 16} {
		clock.Fire(t)
		next(want * time.Second)
	}
	if n := s.Errors(); n != 6 {
		t.Errorf("%d failed exchanges counted, want 6", n)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Errorf("%d lines logged of 6 failed exchanges, want 1", n)
	}

	srv = srv.Restart(t)
	clock.Fire(t)
	next(time.Second)
	if n := s.Errors(); n != 6 {
		t.Errorf("%d failed exchanges counted once Redis is back, want 6", n)
	}
	if n := logs.FilterMessage("redis state: answering again").Len(); n != 1 {
		t.Errorf("%d lines of recovery, want 1", n)
	}
	other := NewAdaptiveRedis(sharedOn(t, srv), "backoff", 0)
	defer other.Close()
	waitArm(t, other, "all", "a", AdaptiveArm{Alpha: 2})
}

// BenchmarkAdaptiveSelectRedis measures a decision and its feedback with
// the state in Redis, against the memory store: the hot path reads and
// writes this process's view only (no round trip per request).
func BenchmarkAdaptiveSelectRedis(b *testing.B) {
	req := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"Explain why the sky is blue."}]}`))
	for _, store := range []string{"memory", "redis"} {
		b.Run(store, func(b *testing.B) {
			a := new(Adaptive)
			a.Seed = 1
			if err := a.Provision(caddy.Context{}); err != nil {
				b.Fatal(err)
			}
			defer a.Cleanup()
			if store == "redis" {
				srv := redistest.Start(b)
				c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
				defer c.Close()
				a.BindShared(&SharedState{Client: c, Prefix: "bench:", Timeout: time.Second, Interval: 10 * time.Millisecond})
				a.BindRoute("bench")
			}
			cs := make([]Candidate, 0, 11)
			b.ReportAllocs()
			for b.Loop() {
				cs = append(cs[:0], banditCands()...)
				a.Select(&req, cs)
				a.Observe("d0", cs[0].Model, 1)
			}
		})
	}
}
