package limits

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
)

// go-redis logs every failed dial on its own global logger; the tests
// kill Redis on purpose.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// backend is a kind of Store the behavioural tests run on.
type backend struct {
	name string
	// open returns n stores that share their counters: one Memory n
	// times, or n Redis stores (n gateways) on one new redis-server.
	open func(t *testing.T, n int) []Store
}

var backends = []backend{
	{"memory", func(t *testing.T, n int) []Store {
		m := NewMemory()
		out := make([]Store, n)
		for i := range out {
			out[i] = m
		}
		return out
	}},
	{"redis", func(t *testing.T, n int) []Store {
		srv := redistest.Start(t)
		out := make([]Store, n)
		for i := range out {
			// A generous timeout and deny: a Redis error must fail the
			// test, not pass it on a local store.
			r := newRedis(t, RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second, OnError: OnErrorDeny})
			t.Cleanup(func() {
				if n := r.Errors(); n != 0 {
					t.Errorf("%d Redis errors", n)
				}
			})
			out[i] = r
		}
		return out
	}},
}

// eachStore runs f on a new store of every backend.
func eachStore(t *testing.T, f func(t *testing.T, m Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t, 1)[0]) })
	}
}

func newRedis(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	r, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// client returns a plain client of srv, for looking at what the store
// wrote.
func client(t testing.TB, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Every key the store writes has a TTL, and not a longer one than its
// counter needs: a window's end, a full drain, or the idle TTL of a
// concurrency counter; each with the margin.
func TestRedisKeysHaveTTL(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedis(t, RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second, OnError: OnErrorDeny, ConcurrencyTTL: 5 * time.Minute})
	loc := mustLoc(t, "Asia/Shanghai")
	s := NewSubject("model:m", Limits{RPM: 60, TPM: 6000, MaxConcurrent: 3, DailyRequests: 100,
		DailyTokens: 1e6, DailyBudget: 10, MonthlyBudget: 100}, loc)
	now := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC) // 23:00 in Shanghai
	a := Amount{Requests: 1, Tokens: 1000, Cost: 0.5}
	held, _ := reserve(t, r, s, a, now) // not settled: holds a slot
	for i := range 4 {
		res, v := reserve(t, r, s, a, now)
		if !v.OK {
			t.Fatalf("request %d denied: %+v", i, v)
		}
		if i%2 == 0 {
			err := res.Settle(ctx, Amount{Requests: 1, Tokens: 800, Cost: 0.3}, now)
			if err != nil {
				t.Fatal(err)
			}
		} else if err := res.Release(ctx, now); err != nil {
			t.Fatal(err)
		}
	}
	if r.Errors() != 0 {
		t.Fatalf("%d Redis errors", r.Errors())
	}
	margin := time.Minute
	dayEnd := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	monthEnd := time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC)
	most := map[Kind]time.Duration{
		RPM:           time.Minute + margin, // at most 60 requests: a minute's drain
		TPM:           time.Minute + margin,
		MaxConcurrent: 5 * time.Minute,
		DailyRequests: dayEnd.Sub(now) + margin,
		DailyTokens:   dayEnd.Sub(now) + margin,
		DailyBudget:   dayEnd.Sub(now) + margin,
		MonthlyBudget: monthEnd.Sub(now) + margin,
	}
	c := client(t, srv)
	seen := map[Kind]bool{}
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		ttl, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, DefaultRedisPrefix+"model:m|") {
			t.Errorf("key %q outside the prefix", key)
		}
		kind := numKinds
		for k := range numKinds {
			if strings.HasPrefix(key, DefaultRedisPrefix+"model:m|"+k.String()) {
				kind = k
			}
		}
		seen[kind] = true
		if ttl <= 0 || kind == numKinds || ttl > most[kind] {
			t.Errorf("key %q (%v): TTL %v, want above 0 and at most %v", key, kind, ttl, most[kind])
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != int(numKinds) {
		t.Errorf("keys for %v, want one for each of the %d kinds", seen, numKinds)
	}
	_ = held.Release(ctx, now)
}

// Redis and Memory give the same answers to the same random
// reservations, settlements and releases over time.
func TestRedisAgreesWithMemory(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedis(t, RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second, OnError: OnErrorDeny})
	m := NewMemory()
	subjects := []*Subject{
		NewSubject("model:a", Limits{RPM: 2, TPM: 5000, MaxConcurrent: 5}, time.UTC),
		NewSubject("key:b", Limits{DailyRequests: 150, DailyTokens: 200000, DailyBudget: 1.2}, time.UTC),
		NewSubject("route:c", Limits{MonthlyBudget: 1.8, TPM: 9000}, time.UTC),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 12, 31, 23, 20, 0, 0, time.UTC) // the day and the month end on the way
	type pair struct{ onMemory, onRedis *Reservation }
	var open []pair
	for step := range 600 {
		now = now.Add(time.Duration(rng.IntN(20000)) * time.Millisecond)
		if len(open) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(open))
			p := open[i]
			open = append(open[:i], open[i+1:]...)
			actual := Amount{Requests: 1, Tokens: float64(rng.IntN(3000)), Cost: float64(rng.IntN(100)) / 1000}
			release := rng.IntN(4) == 0
			for _, res := range []*Reservation{p.onMemory, p.onRedis} {
				var err error
				if release {
					err = res.Release(ctx, now)
				} else {
					err = res.Settle(ctx, actual, now)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		a := Amount{Requests: 1, Tokens: float64(rng.IntN(4000)), Cost: float64(rng.IntN(100)) / 700}
		var charges [2][]Charge
		for _, s := range subjects {
			if rng.IntN(3) != 0 {
				charges[0] = s.Charges(charges[0], a, now)
			}
		}
		charges[1] = slices.Clone(charges[0])
		rm, vm, err := reserveCharges(ctx, m, charges[0], now)
		if err != nil {
			t.Fatal(err)
		}
		rr, vr, err := reserveCharges(ctx, r, charges[1], now)
		if err != nil {
			t.Fatal(err)
		}
		// Time moves in whole milliseconds, which Redis is given exactly;
		// the drain's arithmetic may still differ in the last bit.
		if vm.OK != vr.OK || vm.Denied != vr.Denied || absDur(vm.RetryAfter-vr.RetryAfter) > time.Microsecond {
			t.Fatalf("step %d at %v: memory %+v, redis %+v", step, now, vm, vr)
		}
		for i := range charges[0] {
			if lm, lr := charges[0][i].Left, charges[1][i].Left; math.Abs(lm-lr) > 1e-6*max(1, math.Abs(lm)) {
				t.Fatalf("step %d, %s: %v left on memory, %v on redis", step, charges[0][i].Counter.Key, lm, lr)
			}
		}
		if vm.OK {
			open = append(open, pair{rm, rr})
		}
	}
	if r.Errors() != 0 {
		t.Fatalf("%d Redis errors", r.Errors())
	}
}

func absDur(d time.Duration) time.Duration { return max(d, -d) }

// One reservation is one call to Redis, and so is one settlement; a
// script flushed from Redis is sent again.
func TestRedisOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedis(t, RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second, OnError: OnErrorDeny})
	s := NewSubject("model:m", Limits{RPM: 1000, TPM: 1e6, MaxConcurrent: 100, DailyBudget: 100}, time.UTC)
	now := time.Now()
	c := client(t, srv)
	var sent atomic.Int64 // commands the store sends, each a round trip
	r.client.AddHook(countHook{&sent})
	for round := range 2 {
		// Warm: the scripts loaded, a connection open.
		res, _ := reserve(t, r, s, Amount{Requests: 1, Tokens: 10}, now)
		if err := res.Release(ctx, now); err != nil {
			t.Fatal(err)
		}
		if err := c.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		sent.Store(0)
		const n = 10
		for range n {
			res, v := reserve(t, r, s, Amount{Requests: 1, Tokens: 10, Cost: 0.01}, now)
			if !v.OK {
				t.Fatalf("denied: %+v", v)
			}
			if err := res.Settle(ctx, Amount{Requests: 1, Tokens: 5, Cost: 0.01}, now); err != nil {
				t.Fatal(err)
			}
		}
		if calls := commandCalls(t, c); calls["evalsha"] != 2*n || calls["eval"] != 0 {
			t.Errorf("round %d: Redis ran %d EVALSHA and %d EVAL, want %d and 0", round, calls["evalsha"], calls["eval"], 2*n)
		}
		if got := sent.Swap(0); got != 2*n {
			t.Errorf("round %d: the store sent %d commands, want %d", round, got, 2*n)
		}
		if r.Errors() != 0 {
			t.Fatalf("%d Redis errors", r.Errors())
		}
		// Round two: Redis forgot the scripts (a restart, a failover).
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// countHook counts the commands a client sends, pipelines included.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// commandCalls returns the calls of each command since the last reset of
// Redis' statistics.
func commandCalls(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls[name], _ = strconv.Atoi(n)
	}
	return calls
}

// A user and a password from the URL, or from the options, reach Redis;
// a wrong password is a Redis error, and no error message or log line
// holds it.
func TestRedisAuth(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	if err := c.Do(ctx, "ACL", "SETUSER", "gw", "on", ">s3cret", "~llm_route:*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "ACL", "SETUSER", "default", "off").Err(); err != nil {
		t.Fatal(err)
	}
	host := srv.Addr
	s := NewSubject("model:m", Limits{RPM: 10}, time.UTC)
	now := time.Now()
	for _, tc := range []struct {
		name string
		o    RedisOptions
		ok   bool
	}{
		{"url", RedisOptions{URL: "redis://gw:s3cret@" + host}, true},
		{"options", RedisOptions{URL: "redis://" + host, Username: "gw", Password: "s3cret"}, true},
		{"options over url", RedisOptions{URL: "redis://gw:wrong@" + host, Password: "s3cret"}, true},
		{"wrong password", RedisOptions{URL: "redis://gw:wr0ng-s3cret@" + host}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			tc.o.Timeout, tc.o.Logger = 10*time.Second, zap.New(core)
			r := newRedis(t, tc.o)
			pingErr := r.Ping(ctx)
			_, v := reserve(t, r, s, Amount{Requests: 1}, now)
			if !v.OK {
				t.Fatalf("denied: %+v", v)
			}
			if onRedis := v.Store == nil; onRedis != tc.ok || (pingErr == nil) != tc.ok {
				t.Fatalf("reserved on Redis: %v, ping: %v; want Redis reached: %v", onRedis, pingErr, tc.ok)
			}
			if tc.ok {
				return
			}
			if strings.Contains(pingErr.Error(), "s3cret") {
				t.Errorf("error holds the password: %v", pingErr)
			}
			for _, e := range logs.All() {
				if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, "s3cret") {
					t.Errorf("log holds the password: %s", line)
				}
			}
			if logs.Len() == 0 {
				t.Error("the Redis error was not logged")
			}
		})
	}
}

func TestRedisOptions(t *testing.T) {
	for _, tc := range []struct{ url, err string }{
		{"http://localhost:6379", "invalid URL scheme"},
		{"redis://user:s3cret@localhost:notaport", "invalid port"},
	} {
		_, err := NewRedis(RedisOptions{URL: tc.url})
		if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error %v, want one saying %q without the password", tc.url, err, tc.err)
		}
	}
	r := newRedis(t, RedisOptions{URL: "rediss://u:p@localhost:6380/2"})
	if o := r.client.Options(); o.TLSConfig == nil || o.DB != 2 || o.Username != "u" || o.Password != "p" ||
		o.ReadTimeout != DefaultRedisTimeout || o.MaxRetries != 0 || r.prefix != DefaultRedisPrefix {
		t.Errorf("rediss:// options: TLS %v, db %d, user %q, read timeout %v, retries %d, prefix %q",
			o.TLSConfig != nil, o.DB, o.Username, o.ReadTimeout, o.MaxRetries, r.prefix)
	}
	var p OnError
	if err := p.UnmarshalText([]byte("deny")); err != nil || p != OnErrorDeny {
		t.Errorf("deny: %v %v", p, err)
	}
	if err := p.UnmarshalText([]byte("maybe")); err == nil {
		t.Error("on_error maybe accepted")
	}
	if b, _ := OnErrorAllow.MarshalText(); string(b) != "allow" {
		t.Errorf("allow marshals to %q", b)
	}
}

// Redis killed mid-test, or down from the start: every call still
// answers, by the policy (allow: the local store and its limits; deny:
// not OK), the errors are counted, and logged once.
func TestRedisDown(t *testing.T) {
	for _, policy := range []OnError{OnErrorAllow, OnErrorDeny} {
		for _, whenDown := range []string{"killed mid-test", "down from the start"} {
			t.Run(policy.String()+"/"+whenDown, func(t *testing.T) {
				testRedisDown(t, policy, whenDown == "killed mid-test")
			})
		}
	}
}

func testRedisDown(t *testing.T, policy OnError, midTest bool) {
	srv := redistest.Start(t)
	if !midTest {
		srv.Kill()
	}
	core, logs := observer.New(zapcore.DebugLevel)
	local := NewMemory()
	// The default timeout: the short one production runs with. While
	// Redis is up, a timeout on a loaded machine would only move the
	// warm-up to the local store, which is checked loosely.
	r := newRedis(t, RedisOptions{URL: srv.URL(), OnError: policy, Local: local,
		Logger: zap.New(core), LogInterval: time.Hour})
	s := NewSubject("model:m", Limits{RPM: 100, DailyRequests: 3}, time.UTC)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	var onRedis *Reservation
	if midTest {
		res, v := reserve(t, r, s, Amount{Requests: 1}, now)
		if v.Store == nil {
			onRedis = res
		}
		srv.Kill()
	}
	before := r.Errors()

	// Twenty at once; each must answer, however slowly the machine runs.
	const n = 20
	type answer struct {
		res *Reservation
		v   Verdict
		err error
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			res, v, err := reserveCharges(ctx, r, s.Charges(nil, Amount{Requests: 1}, now), now)
			answers <- answer{res, v, err}
		}()
	}
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	var admitted []*Reservation
	for range n {
		select {
		case a := <-answers:
			if a.err != nil {
				t.Fatalf("Reserve: %v", a.err)
			}
			switch policy {
			case OnErrorAllow:
				if a.v.Store != Store(fallback{r}) {
					t.Errorf("answered by %v, want the local store", a.v.Store)
				}
				if a.v.OK {
					admitted = append(admitted, a.res)
				} else if a.v.Unavailable || a.v.RetryAfter <= 0 {
					t.Errorf("local denial %+v", a.v)
				}
			case OnErrorDeny:
				if a.v.OK || !a.v.Unavailable || a.v.RetryAfter != time.Second {
					t.Errorf("verdict %+v, want denied as unavailable for 1s", a.v)
				}
			}
		case <-deadline.C:
			t.Fatal("Reserve hangs on a dead Redis")
		}
	}
	if policy == OnErrorAllow {
		// The local limit: 3 a day, less what the warm-up took locally.
		want := 3
		if midTest && onRedis == nil {
			want--
		}
		if len(admitted) != want {
			t.Errorf("%d admitted locally, want %d", len(admitted), want)
		}
		// A local reservation settles on the local store.
		if len(admitted) > 0 {
			if err := admitted[0].Release(ctx, now); err != nil {
				t.Fatal(err)
			}
			if _, v := reserve(t, r, s, Amount{Requests: 1}, now); !v.OK {
				t.Errorf("a released local reservation still counts: %+v", v)
			}
		}
	}
	if got := r.Errors() - before; got < n {
		t.Errorf("%d errors counted, want at least %d", got, n)
	}
	// A reservation Redis holds cannot be settled: an error, counted.
	if onRedis != nil {
		before := r.Errors()
		if err := onRedis.Settle(ctx, Amount{Requests: 1}, now); err == nil {
			t.Error("settled on a dead Redis without an error")
		}
		if r.Errors() != before+1 {
			t.Errorf("errors %d, want %d", r.Errors(), before+1)
		}
	}
	if logs.Len() != 1 {
		t.Errorf("%d log lines, want 1 in the interval", logs.Len())
	}
	for _, e := range logs.All() {
		if e.Level != zapcore.WarnLevel || e.ContextMap()["on_error"] != policy.String() {
			t.Errorf("log: %v %s %v", e.Level, e.Message, e.ContextMap())
		}
	}
}

// Admission on a local Redis: one reservation and its release per op,
// on four counters, one round trip each. reserve-ns/op is the time of
// the reservation alone: what a request waits before its upstream call.
func BenchmarkRedisAdmission(b *testing.B) {
	srv := redistest.Start(b)
	r := newRedis(b, RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second, OnError: OnErrorDeny})
	s := NewSubject("model:m", Limits{RPM: 1 << 40, TPM: 1 << 50, MaxConcurrent: 1 << 30, DailyBudget: 1e12}, time.UTC)
	var reserving atomic.Int64 // ns
	op := func(b *testing.B) {
		now := time.Now()
		res := NewReservation()
		res.Charges = s.Charges(res.Charges, Amount{Requests: 1, Tokens: 100, Cost: 0.001}, now)
		v, err := res.Reserve(context.Background(), r, now)
		reserving.Add(int64(time.Since(now)))
		if err != nil || !v.OK {
			b.Fatalf("denied: %+v %v", v, err)
		}
		if err := res.Release(context.Background(), now); err != nil {
			b.Fatal(err)
		}
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(reserving.Swap(0))/float64(b.N), "reserve-ns/op")
	}
	b.Run("serial", func(b *testing.B) {
		reserving.Store(0)
		b.ReportAllocs()
		for b.Loop() {
			op(b)
		}
		report(b)
	})
	b.Run("parallel", func(b *testing.B) {
		reserving.Store(0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				op(b)
			}
		})
		report(b)
	})
	if r.Errors() != 0 {
		b.Fatalf("%d Redis errors", r.Errors())
	}
}
