package upstreams

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
	"github.com/caddy-llm-route/llmroute/internal/testclock"
	"github.com/caddy-llm-route/llmroute/limits"
)

// go-redis logs every failed dial on its own global logger; the tests
// kill Redis on purpose.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// waitFor is the most a test waits for a condition that the sync loops
// bring about: generous, for a loaded machine.
const waitFor = 30 * time.Second

// testInterval is the sync interval of the tests: small, so that the
// waits are short when the machine is not loaded.
const testInterval = 20 * time.Millisecond

// instance is one gateway of a fleet: its own Redis client and Shared.
type instance struct {
	redis  *limits.Redis
	shared *Shared
}

// newInstance opens an instance on url. It is closed when the test
// ends, after the test's own cleanups (which release the pairs).
func newInstance(t *testing.T, url string, timeout time.Duration) *instance {
	t.Helper()
	return newInstanceWith(t, url, timeout, 0)
}

// newInstanceWith is newInstance with the stats TTL (0: the default).
func newInstanceWith(t *testing.T, url string, timeout, statsTTL time.Duration) *instance {
	t.Helper()
	r, err := limits.NewRedis(limits.RedisOptions{URL: url, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{redis: r, shared: NewShared(SharedOptions{
		Client: r.Client(), Prefix: r.Prefix(), Timeout: r.Timeout(), Interval: testInterval, StatsTTL: statsTTL,
	})}
	t.Cleanup(func() {
		in.shared.Close()
		_ = r.Close()
	})
	return in
}

// acquire takes the pair of p and model shared by in, released when the
// test ends.
func (in *instance) acquire(t *testing.T, p *Provider, model string) Pair {
	t.Helper()
	pair := AcquirePair(p, model, in.shared)
	t.Cleanup(func() { ReleasePair(p, model, in.shared) })
	return pair
}

// eventually waits until cond holds, checking it every few ms, and
// fails the test with what after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testProvider is a provider with the identity id, as Provision makes
// it.
func testProvider(id string) *Provider {
	return &Provider{Name: id, stateKey: id + "#test"}
}

// verifyNoLeaks checks, when the test ends (after the cleanups
// registered after it), that no goroutine the test started is left.
func verifyNoLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// A cooldown opened on one instance makes the pair unavailable on the
// other once it polled; a success on either closes it on both; the
// cooldown's key has a TTL. Half-open probes stay local.
func TestSharedCooldown(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	a, b := newInstance(t, srv.URL(), 10*time.Second), newInstance(t, srv.URL(), 10*time.Second)
	prov := testProvider("alpha")
	pa, pb := a.acquire(t, prov, "m"), b.acquire(t, prov, "m")
	if pa == pb {
		t.Fatal("two instances got one pair object: sharing would not go through Redis")
	}
	check := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer check.Close()
	key := "llm_route:cool:" + PairKey(prov, "m")

	// A 429 with Retry-After on A.
	now := time.Now()
	fail(pa, time.Minute, Policy{}, now)
	until := pa.CooldownUntil()
	eventually(t, "B is still available after A's cooldown", func() bool { return !pb.Available(time.Now()) })
	if got := pb.CooldownUntil(); !got.Equal(time.UnixMilli(until.UnixMilli())) {
		t.Errorf("B cools down until %v, want A's %v", got, until)
	}
	if pb.Start(time.Now()) {
		t.Error("B probes a pair whose cooldown runs")
	}
	pb.Finish(Outcome{Result: Neutral}, Policy{}, time.Now())
	ttl, err := check.PTTL(context.Background(), key).Result()
	if err != nil || ttl <= 0 || ttl > time.Minute+coolMargin {
		t.Errorf("TTL of %q: %v %v, want up to the cooldown's end plus %v", key, ttl, err, coolMargin)
	}
	if v, _ := check.Get(context.Background(), key).Result(); v != strconv.FormatInt(until.UnixMilli(), 10) {
		t.Errorf("%q holds %q, want the cooldown's end %d", key, v, until.UnixMilli())
	}

	// A later cooldown on B replaces A's on both; an earlier one would
	// not shorten it.
	fail(pb, 2*time.Minute, Policy{}, time.Now())
	until = pb.CooldownUntil()
	eventually(t, "A does not see B's later cooldown, or B does not read it back", func() bool {
		want := time.UnixMilli(until.UnixMilli())
		return pa.CooldownUntil().Equal(want) && fleetOf(pb).Equal(want)
	})
	earlier := strconv.FormatInt(until.Add(-time.Second).UnixMilli(), 10)
	if set, err := check.Eval(context.Background(), setLater, []string{key}, earlier, 60000).Int(); err != nil || set != 0 {
		t.Errorf("setting an earlier cooldown: %v %v, want 0 (left alone)", set, err)
	}
	if v, _ := check.Get(context.Background(), key).Result(); v != strconv.FormatInt(until.UnixMilli(), 10) {
		t.Errorf("%q holds %q, want the later cooldown's end %d", key, v, until.UnixMilli())
	}

	// Once the cooldown has run out, each instance probes for itself.
	later := until.Add(time.Millisecond)
	if !pa.Available(later) || !pb.Available(later) {
		t.Fatal("the pair is not half-open on both instances once the cooldown ran out")
	}
	probeA, probeB := pa.Start(later), pb.Start(later)
	if !probeA || !probeB {
		t.Fatalf("probes: A %v, B %v; want one on each instance", probeA, probeB)
	}
	if pa.Available(later) || pb.Available(later) {
		t.Error("a second request goes through while the probe is under way")
	}
	pa.Finish(Outcome{Result: Neutral, Probe: true}, Policy{}, later)
	pb.Finish(Outcome{Result: Neutral, Probe: true}, Policy{}, later)

	// A success on A (the pair tried as a last resort) closes the
	// cooldown on B.
	succeed(pa, time.Now())
	eventually(t, "B still cools down after a success on A", func() bool {
		return pb.Available(time.Now()) && pb.CooldownUntil().IsZero()
	})
	if n, _ := check.Exists(context.Background(), key).Result(); n != 0 {
		t.Errorf("%q still exists after the success", key)
	}

	// And the other way round: B's success closes A's own cooldown,
	// once A has read it back from the fleet.
	fail(pa, time.Minute, Policy{}, time.Now())
	eventually(t, "B is still available after A's second cooldown", func() bool { return !pb.Available(time.Now()) })
	eventually(t, "A does not read its cooldown back", func() bool { return !fleetOf(pa).IsZero() })
	succeed(pb, time.Now())
	eventually(t, "A still cools down after a success on B", func() bool {
		return pa.Available(time.Now()) && pa.CooldownUntil().IsZero()
	})
	if a.shared.Errors() != 0 || b.shared.Errors() != 0 {
		t.Errorf("Redis errors: A %d, B %d", a.shared.Errors(), b.shared.Errors())
	}
}

// fleetOf returns the fleet's cooldown as p last polled it.
func fleetOf(p Pair) time.Time {
	sp := p.(*sharedPair)
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.fleet
}

func succeed(p Pair, now time.Time) {
	probe := p.Start(now)
	p.Finish(Outcome{Result: Succeeded, Probe: probe}, Policy{}, now)
}

// finishTimed finishes an attempt on p that took total.
func finishTimed(p Pair, r Result, total time.Duration) {
	now := time.Now()
	probe := p.Start(now)
	p.Finish(Outcome{Result: r, Probe: probe, Timed: true, Total: total}, Policy{}, now)
}

// Each instance's snapshot merges the fleet's stats, each average
// weighted by its samples; the stats hash has a TTL; an instance gone
// drops out.
func TestSharedStats(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	a, b := newInstance(t, srv.URL(), 10*time.Second), newInstance(t, srv.URL(), 10*time.Second)
	prov := testProvider("alpha")
	pa, pb := a.acquire(t, prov, "m"), b.acquire(t, prov, "m")

	// A: three answers of 100ms and a failure, one attempt under way;
	// B: one answer of 500ms.
	for range 3 {
		finishTimed(pa, Succeeded, 100*time.Millisecond)
	}
	finishTimed(pa, Failed, 0)
	pa.Start(time.Now())
	finishTimed(pb, Succeeded, 500*time.Millisecond)

	want := Stats{
		LatencyMs: (3*100 + 500) / 4.0,
		ErrorRate: (0.2*4 + 0*1) / 5.0, // A's EWMA of 0,0,0,1 is 0.2
		InFlight:  1,
		Samples:   5,
	}
	same := func(s Stats) bool {
		const eps = 1e-9
		return s.Samples == want.Samples && s.InFlight == want.InFlight &&
			abs(s.LatencyMs-want.LatencyMs) < eps && abs(s.ErrorRate-want.ErrorRate) < eps
	}
	eventually(t, "B does not see the fleet's stats", func() bool { return same(pb.Snapshot()) })
	eventually(t, "A does not see the fleet's stats", func() bool { return same(pa.Snapshot()) })

	check := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer check.Close()
	key := "llm_route:stats:" + PairKey(prov, "m")
	ttl, err := check.PTTL(context.Background(), key).Result()
	if err != nil || ttl <= 0 || ttl > DefaultStatsTTL {
		t.Errorf("TTL of %q: %v %v, want up to %v", key, ttl, err, DefaultStatsTTL)
	}
	fields, err := check.HKeys(context.Background(), key).Result()
	if err != nil || len(fields) != 2 {
		t.Errorf("fields of %q: %q %v, want the two instances' ids", key, fields, err)
	}

	// An instance whose entry is older than the TTL drops out, and its
	// field goes.
	old := statsEntry{stamp: time.Now().Add(-time.Hour), inFlight: 7, latency: avg{v: 9000, n: 100}, errorRate: avg{v: 1, n: 100}}
	if err := check.HSet(context.Background(), key, "gone", old.encode()).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an entry of an hour ago is still in the hash", func() bool {
		n, err := check.HExists(context.Background(), key, "gone").Result()
		return err == nil && !n
	})
	if s := pb.Snapshot(); !same(s) {
		t.Errorf("B's stats with a stale entry in the hash: %+v, want %+v", s, want)
	}
	pa.Finish(Outcome{Result: Neutral}, Policy{}, time.Now())
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// With Redis gone, the pairs answer from this process's state at once,
// the errors are counted, and releasing the pairs stops the loop.
func TestSharedRedisDown(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	// (B's stats count on A for an hour, whatever the machine's pace.)
	a, b := newInstanceWith(t, srv.URL(), 200*time.Millisecond, time.Hour), newInstance(t, srv.URL(), 200*time.Millisecond)
	prov := testProvider("alpha")
	pa, pb := a.acquire(t, prov, "m"), b.acquire(t, prov, "m")
	finishTimed(pb, Succeeded, 300*time.Millisecond)
	eventually(t, "A does not see B's stats", func() bool { return pa.Snapshot().Samples == 1 })

	srv.Kill()
	eventually(t, "no Redis error counted", func() bool { return a.shared.Errors() > 0 })
	fail(pa, time.Minute, Policy{}, time.Now())
	if pa.Available(time.Now()) {
		t.Error("A's own cooldown does not apply with Redis down")
	}
	finishTimed(pa, Succeeded, 100*time.Millisecond)
	if !pa.Available(time.Now()) {
		t.Error("A's own success does not close its cooldown with Redis down")
	}
	// B's last stats still count until the stats TTL passes.
	if s := pa.Snapshot(); s.Samples != 2 || s.LatencyMs != 200 {
		t.Errorf("A's stats with Redis down: %+v, want its sample of 100ms and B's last one of 300ms", s)
	}
	if !pb.Available(time.Now()) {
		t.Error("B learnt of A's cooldown with Redis down")
	}
}

// clockedInstance is an instance on the Redis at url whose loop polls
// every second of clock, a clock the test moves.
func clockedInstance(t *testing.T, url string, logger *zap.Logger) (*instance, *testclock.After) {
	r, err := limits.NewRedis(limits.RedisOptions{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clock := testclock.New()
	a := &instance{redis: r, shared: NewShared(SharedOptions{Client: r.Client(), Prefix: r.Prefix(), Timeout: r.Timeout(),
		Interval: time.Second, Logger: logger, After: clock.After})}
	t.Cleanup(func() {
		a.shared.Close()
		_ = r.Close()
	})
	return a, clock
}

// While Redis is down the polls back off, each wait twice the last up
// to 16 intervals, and the failures are counted and logged once; once
// Redis is back (empty, as after a crash) the polls run every interval
// again, the recovery is logged, and the fleet sees this instance's
// stats again.
func TestSharedBacksOff(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	core, logs := observer.New(zapcore.InfoLevel)
	a, clock := clockedInstance(t, srv.URL(), zap.New(core))
	prov := testProvider("alpha")
	pa := a.acquire(t, prov, "m")
	next := func(want time.Duration) {
		t.Helper()
		if got := clock.Next(t); got != want {
			t.Fatalf("after %d failed polls the loop waits %v, want %v", a.shared.Errors(), got, want)
		}
	}

	next(time.Second)
	srv.Kill()
	for _, want := range []time.Duration{1, 2, 4, 8, 16, 16} {
		clock.Fire(t)
		next(want * time.Second)
	}
	if n := a.shared.Errors(); n != 6 {
		t.Errorf("%d failed polls counted, want 6", n)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Errorf("%d lines logged of 6 failed polls, want 1", n)
	}

	srv = srv.Restart(t)
	finishTimed(pa, Succeeded, 300*time.Millisecond)
	clock.Fire(t)
	next(time.Second)
	if n := a.shared.Errors(); n != 6 {
		t.Errorf("%d failed polls counted once Redis is back, want 6", n)
	}
	if n := logs.FilterMessage("redis state: answering again").Len(); n != 1 {
		t.Errorf("%d lines of recovery, want 1", n)
	}
	b := newInstance(t, srv.URL(), 5*time.Second)
	pb := b.acquire(t, prov, "m")
	eventually(t, "B does not see A's stats", func() bool { return pb.Snapshot().Samples == 1 })
}

// An error reply to some of the exchange's commands (here a stats key
// of another type) is counted, but the loop goes on every interval: Redis
// answers, and what it read is used.
func TestSharedErrorReplyNoBackOff(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	a, clock := clockedInstance(t, srv.URL(), zap.NewNop())
	pa := a.acquire(t, testProvider("alpha"), "m")
	statsKey := pa.(*sharedPair).statsKey
	if err := a.redis.Client().Set(context.Background(), statsKey, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := clock.Next(t); got != time.Second {
		t.Fatalf("first wait %v", got)
	}
	for range 4 {
		finishTimed(pa, Succeeded, 300*time.Millisecond)
		clock.Fire(t)
		if got := clock.Next(t); got != time.Second {
			t.Fatalf("after %d error replies the loop waits %v, want 1s", a.shared.Errors(), got)
		}
	}
	if n := a.shared.Errors(); n < 4 {
		t.Errorf("%d error replies counted, want at least 4", n)
	}
}

// A cooldown whose exchange failed is sent again: Redis refuses writes
// for a while (CLIENT PAUSE WRITE), A's cooldown times out, and once
// writes pass again B learns of it.
func TestSharedResendsCooldown(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	a, b := newInstance(t, srv.URL(), 200*time.Millisecond), newInstance(t, srv.URL(), 200*time.Millisecond)
	prov := testProvider("alpha")
	pa, pb := a.acquire(t, prov, "m"), b.acquire(t, prov, "m")
	check := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer check.Close()
	ctx := context.Background()
	if err := check.Do(ctx, "CLIENT", "PAUSE", 600000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	fail(pa, time.Minute, Policy{}, time.Now())
	eventually(t, "A's cooldown does not fail to reach a paused Redis", func() bool { return a.shared.Errors() > 0 })
	if !pb.Available(time.Now()) {
		t.Fatal("B learnt of a cooldown that Redis did not take")
	}
	if err := check.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "A's cooldown is not sent again", func() bool { return !pb.Available(time.Now()) })
}

// blackHole accepts connections and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "redis://" + l.Addr().String()
}

// A Redis that never answers, with a timeout of 5s: a hundred rounds of
// requests do not wait on it (the loop is stuck in its exchanges), and
// releasing the pair stops the loop once its exchange timed out.
func TestSharedNeverWaits(t *testing.T) {
	verifyNoLeaks(t)
	in := newInstance(t, blackHole(t), 5*time.Second)
	prov := testProvider("alpha")
	p := AcquirePair(prov, "m", in.shared)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			now := time.Now()
			p.Available(now)
			fail(p, time.Minute, Policy{}, now) // queues a cooldown to send
			succeed(p, now)                     // queues its deletion
			p.Snapshot()
			p.CooldownUntil()
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("the pair's methods wait on Redis")
	}
	released := make(chan struct{})
	go func() {
		ReleasePair(prov, "m", in.shared)
		close(released)
	}()
	select {
	case <-released:
	case <-time.After(waitFor):
		t.Fatal("releasing the last pair waits on Redis past the timeout")
	}
}

// A memory-only pair and pairs shared through two Shareds of one
// identity are three states; the pool tells which is shared.
func TestSharedPoolKeys(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	a, b := newInstance(t, srv.URL(), 10*time.Second), newInstance(t, srv.URL(), 10*time.Second)
	prov := testProvider("pool")
	mem := AcquirePair(prov, "m", nil)
	defer ReleasePair(prov, "m", nil)
	pa, pb := a.acquire(t, prov, "m"), b.acquire(t, prov, "m")
	if mem == pa || mem == pb || pa == pb {
		t.Fatal("memory and shared pairs of one identity are one state")
	}
	if again := AcquirePair(prov, "m", a.shared); again != pa {
		t.Error("acquiring a shared pair again gives another state")
	} else {
		ReleasePair(prov, "m", a.shared)
	}
	coolDownNow(mem)
	if !pa.CooldownUntil().IsZero() {
		t.Error("a memory pair's cooldown reached the shared pair at once")
	}
	shared := 0
	for _, info := range Pairs() {
		if info.Provider != "pool" {
			continue
		}
		if info.Key != PairKey(prov, "m") {
			t.Errorf("key %q, want the PairKey", info.Key)
		}
		if info.Shared {
			shared++
		}
	}
	if shared != 2 {
		t.Errorf("%d shared pairs listed, want 2", shared)
	}
}

func coolDownNow(p Pair) { fail(p, time.Minute, Policy{}, time.Now()) }

// The stats encoding reads back; anything else is refused.
func TestStatsEncoding(t *testing.T) {
	e := statsEntry{stamp: time.UnixMilli(1700000000123), inFlight: 3,
		latency: avg{v: 123.5, n: 7}, ttft: avg{v: 45, n: 2}, tps: avg{v: 88.25, n: 9}, errorRate: avg{v: 0.125, n: 11}}
	got, ok := decodeStats(e.encode())
	if !ok || got != e {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", e, got, ok)
	}
	for _, bad := range []string{"", "2 1 0 0 0 0 0 0 0 0 0", "1 1 0 0 0 0 0 0 0 0", "1 1 -1 0 0 0 0 0 0 0 0",
		"1 1 0 NaN 1 0 0 0 0 0 0", "1 1 0 1 -1 0 0 0 0 0 0", "1 1 0 +Inf 1 0 0 0 0 0 0", "1 x 0 0 0 0 0 0 0 0 0"} {
		if _, ok := decodeStats(bad); ok {
			t.Errorf("decodeStats(%q) accepted", bad)
		}
	}
}

// The hot path of a shared pair allocates nothing: Available, Start,
// Finish without a change in the health, and Snapshot with the fleet's
// stats merged.
func TestSharedHotPathAllocs(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	a, b := newInstance(t, srv.URL(), 10*time.Second), newInstance(t, srv.URL(), 10*time.Second)
	prov := testProvider("alpha")
	pa, pb := a.acquire(t, prov, "m"), b.acquire(t, prov, "m")
	finishTimed(pb, Succeeded, 100*time.Millisecond)
	eventually(t, "A does not see B's stats", func() bool { return pa.Snapshot().Samples == 1 })
	allocs := testing.AllocsPerRun(100, func() {
		now := time.Now()
		pa.Available(now)
		probe := pa.Start(now)
		pa.Finish(Outcome{Result: Succeeded, Probe: probe, Timed: true, Total: time.Millisecond}, Policy{}, now)
		pa.Snapshot()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request", allocs)
	}
}

// A cooldown of the gateway's own that another instance opened is
// probed here too once its probe interval passed, not waited out; one
// a Retry-After asked for is honoured whole.
func TestSharedCooldownProbedEarly(t *testing.T) {
	verifyNoLeaks(t)
	srv := redistest.Start(t)
	a, b := newInstance(t, srv.URL(), 10*time.Second), newInstance(t, srv.URL(), 10*time.Second)
	prov := testProvider("alpha")
	pa, pb := a.acquire(t, prov, "m"), b.acquire(t, prov, "m")
	policy := Policy{Cooldown: time.Minute, FailThreshold: 1, ProbeInterval: 2 * time.Second}

	failed := time.Now()
	fail(pa, 0, policy, failed)
	eventually(t, "B is still available after A's cooldown", func() bool { return !pb.Available(time.Now()) })
	if pb.Available(failed.Add(time.Second)) {
		t.Error("B lets a request through before the probe interval")
	}
	probeAt := failed.Add(policy.ProbeInterval + time.Millisecond)
	if !pb.Available(probeAt) {
		t.Fatalf("B waits out A's %v cooldown (until %v) instead of probing after %v", policy.Cooldown, pb.CooldownUntil(), policy.ProbeInterval)
	}
	if !pb.Start(probeAt) {
		t.Fatal("B's request after the probe interval is no probe")
	}
	if pb.Available(probeAt) {
		t.Error("a second request goes through while B's probe is under way")
	}
	// The probe succeeds: the cooldown closes on B, and on A.
	pb.Finish(Outcome{Result: Succeeded, Probe: true}, policy, probeAt)
	if !pb.CooldownUntil().IsZero() {
		t.Errorf("B still cools down until %v after its probe succeeded", pb.CooldownUntil())
	}
	eventually(t, "A still cools down after B's probe", func() bool { return pa.CooldownUntil().IsZero() })

	// A 429's Retry-After on A: B waits it out.
	failed = time.Now()
	fail(pa, time.Minute, policy, failed)
	eventually(t, "B is still available after A's Retry-After", func() bool { return !pb.Available(time.Now()) })
	if pb.Available(failed.Add(10 * time.Second)) {
		t.Error("B probes a cooldown a Retry-After asked for")
	}
}
