package strategies

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/limits"
)

// SharedState is the Redis through which the instances of a fleet share
// what learning strategies learn (the handler's `state redis`).
type SharedState struct {
	Client *redis.Client
	// Prefix starts every key.
	Prefix string
	// Timeout bounds each exchange with Redis.
	Timeout time.Duration
	// Interval is how often each instance exchanges its new evidence
	// and the fleet's totals with Redis.
	Interval time.Duration
	// Logger logs failed exchanges, at most one line a minute
	// (limits.DefaultLogInterval), and their end; nil: not logged.
	Logger *zap.Logger
	// After is the clock of the exchanges' waits (limits.SyncLoop);
	// nil: time.After. Tests replace it.
	After func(time.Duration) <-chan time.Time
}

// SharedBinder is a strategy that can keep its learned state in Redis:
// the handler calls BindShared, before BindRoute, when its state lives
// in Redis.
type SharedBinder interface {
	BindShared(s *SharedState)
}

// adaptiveRedisTTL is how long a route's learned state stays in Redis
// after its last write.
const adaptiveRedisTTL = 30 * 24 * time.Hour

// AdaptiveRedis is an AdaptiveStore shared by a fleet through Redis.
// Each arm is two fields of the hash Prefix+"adaptive:"+key,
// ctx+"\x00"+model+"\x00a" and "…\x00b": the pseudo-counts of good and
// bad outcomes summed over every instance (HINCRBYFLOAT), discounted to
// the window in the same script when an arm holds more.
//
// Requests never wait on Redis. Observe adds to this process's pending
// evidence, and Arms reads the fleet's totals as last read plus this
// process's evidence not yet in them. One goroutine per store sends the
// pending evidence and reads the totals back, in one script call every
// Interval. So an instance sees its own evidence at once and the other
// instances' evidence at most about two intervals late (theirs is sent
// within an interval, and read within the next). While Redis cannot be
// reached the evidence is kept and sent once it can, the fleet's totals
// stay as last read, and the exchanges back off up to 16 intervals
// apart (limits.SyncLoop); each failed exchange is counted (Errors) and
// logged at most one line a minute, and the recovery too. The
// hash lives 30 days after its last write.
type AdaptiveRedis struct {
	client  *redis.Client
	key     string
	window  float64
	timeout time.Duration
	loop    limits.SyncLoop

	mu       sync.Mutex
	fleet    map[adaptiveKey]AdaptiveArm // the totals last read
	pending  map[adaptiveKey]AdaptiveArm // evidence not yet sent
	inflight map[adaptiveKey]AdaptiveArm // evidence sent, not yet read back

	stop context.CancelFunc
	done chan struct{}
}

// NewAdaptiveRedis returns a store of the state named key in s, whose
// arms keep at most window observations' weight (0: unlimited), and
// starts its goroutine; Close stops it.
func NewAdaptiveRedis(s *SharedState, key string, window float64) *AdaptiveRedis {
	timeout, interval := s.Timeout, s.Interval
	if timeout <= 0 {
		timeout = 100 * time.Millisecond
	}
	if interval <= 0 {
		interval = time.Second
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &AdaptiveRedis{
		client: s.Client, key: s.Prefix + "adaptive:" + key, window: window, timeout: timeout,
		loop: limits.SyncLoop{Interval: interval, After: s.After,
			Failures: limits.NewFailures(s.Logger, 0, "redis state: sharing what adaptive learnt failed", zap.String("key", key))},
		fleet: map[adaptiveKey]AdaptiveArm{}, pending: map[adaptiveKey]AdaptiveArm{},
		stop: stop, done: make(chan struct{}),
	}
	go r.run(ctx)
	return r
}

// Arms implements AdaptiveStore.
func (r *AdaptiveRedis) Arms(dst []AdaptiveArm, ctx string, models []string) []AdaptiveArm {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range models {
		k := adaptiveKey{ctx, m}
		a, p, f := r.fleet[k], r.pending[k], r.inflight[k]
		a.Alpha += p.Alpha + f.Alpha
		a.Beta += p.Beta + f.Beta
		if n := a.N(); r.window > 0 && n > r.window {
			a.Alpha *= r.window / n
			a.Beta *= r.window / n
		}
		dst = append(dst, a)
	}
	return dst
}

// Observe implements AdaptiveStore.
func (r *AdaptiveRedis) Observe(ctx, model string, q, w float64) {
	if !(q >= 0 && q <= 1) || !(w > 0 && w <= math.MaxFloat64) || strings.Contains(ctx, "\x00") || strings.Contains(model, "\x00") {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := adaptiveKey{ctx, model}
	a := r.pending[k]
	a.Alpha += w * q
	a.Beta += w * (1 - q)
	r.pending[k] = a
}

// Errors returns how many exchanges with Redis have failed.
func (r *AdaptiveRedis) Errors() uint64 { return r.loop.Failures.Count() }

// Close sends the pending evidence (within the timeout) and stops the
// goroutine.
func (r *AdaptiveRedis) Close() {
	r.stop()
	<-r.done
}

func (r *AdaptiveRedis) run(ctx context.Context) {
	defer close(r.done)
	r.loop.Run(ctx, r.sync)
	_ = r.sync(context.Background()) // the last evidence
}

// adaptiveSync adds each arm's evidence (ARGV from 3: field, alpha,
// beta) to the hash KEYS[1], discounts an arm holding more than the
// window ARGV[1] (0: none) to it, renews the TTL (ARGV[2] ms) and
// returns the whole hash.
var adaptiveSync = redis.NewScript(`
local window = tonumber(ARGV[1])
for i = 3, #ARGV, 3 do
	local fa, fb = ARGV[i] .. '\0a', ARGV[i] .. '\0b'
	local a = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], fa, ARGV[i+1]))
	local b = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], fb, ARGV[i+2]))
	if window > 0 and a + b > window then
		local s = window / (a + b)
		redis.call('HSET', KEYS[1], fa, string.format('%.17g', a * s), fb, string.format('%.17g', b * s))
	end
end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('HGETALL', KEYS[1])
`)

// sync sends the pending evidence and reads the fleet's totals.
func (r *AdaptiveRedis) sync(ctx context.Context) error {
	r.mu.Lock()
	sent := r.pending
	r.pending = map[adaptiveKey]AdaptiveArm{}
	r.inflight = sent
	r.mu.Unlock()

	args := make([]any, 0, 2+3*len(sent))
	args = append(args, strconv.FormatFloat(r.window, 'g', -1, 64), adaptiveRedisTTL.Milliseconds())
	for k, a := range sent {
		args = append(args, k.ctx+"\x00"+k.model, strconv.FormatFloat(a.Alpha, 'g', -1, 64), strconv.FormatFloat(a.Beta, 'g', -1, 64))
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	res, err := adaptiveSync.Run(cctx, r.client, []string{r.key}, args...).StringSlice()
	cancel()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight = nil
	if err != nil {
		// Keep the evidence for the next exchange. (Redis may have
		// applied it if only the reply was lost; counting it twice is
		// the lesser harm than losing it.)
		for k, a := range sent {
			p := r.pending[k]
			p.Alpha += a.Alpha
			p.Beta += a.Beta
			r.pending[k] = p
		}
		return err
	}
	fleet := make(map[adaptiveKey]AdaptiveArm, len(res)/4)
	for i := 0; i+1 < len(res); i += 2 {
		field, v := res[i], res[i+1]
		base, kind, ok := cutLast(field)
		ctxName, model, ok2 := strings.Cut(base, "\x00")
		x, perr := strconv.ParseFloat(v, 64)
		if !ok || !ok2 || perr != nil || !(x >= 0) {
			continue
		}
		k := adaptiveKey{ctxName, model}
		a := fleet[k]
		switch kind {
		case "a":
			a.Alpha = x
		case "b":
			a.Beta = x
		default:
			continue
		}
		fleet[k] = a
	}
	r.fleet = fleet
	return nil
}

// cutLast splits field at its last NUL.
func cutLast(field string) (before, after string, ok bool) {
	i := strings.LastIndexByte(field, 0)
	if i < 0 {
		return "", "", false
	}
	return field[:i], field[i+1:], true
}

// adaptiveRedisStates holds the Redis stores in use, by client and key,
// across configurations: a reload on the same Redis keeps the store
// (and its pending evidence).
var adaptiveRedisStates = caddy.NewUsagePool()

type pooledAdaptiveRedis struct{ *AdaptiveRedis }

func (p pooledAdaptiveRedis) Destruct() error {
	p.Close()
	return nil
}

func adaptiveRedisKey(s *SharedState, key string) string {
	return fmt.Sprintf("%p\x00%s\x00%s", s.Client, s.Prefix, key)
}

// acquireAdaptiveRedis returns the Redis store of key in s, creating it
// on first use, and takes a reference to it.
func acquireAdaptiveRedis(s *SharedState, key string, window float64) *AdaptiveRedis {
	v, _, _ := adaptiveRedisStates.LoadOrNew(adaptiveRedisKey(s, key), func() (caddy.Destructor, error) {
		return pooledAdaptiveRedis{NewAdaptiveRedis(s, key, window)}, nil
	})
	return v.(pooledAdaptiveRedis).AdaptiveRedis
}
