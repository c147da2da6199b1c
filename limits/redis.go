package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Redis is a Store shared by a fleet: every counter lives in Redis, and a
// reservation checks and takes all its counters in one Lua script, so
// instances sharing a Redis never reserve together past a limit. Each
// reservation or adjustment is one round trip.
//
// Time is the caller's: the scripts are given now (in whole ms) and
// never read Redis' clock, so instances agree within their clocks' skew.
// A counter is a hash (value, stamp) at Prefix+Key, and every write
// gives it a TTL, relative so that Redis' clock does not matter either,
// and no key lives forever: a calendar counter until its window ends, a
// draining counter until it has drained empty, each plus a minute. A
// counter that does neither (concurrency) is a sorted set at
// Prefix+Key+"|slots" of the slots of the requests under way, each held
// for at most ConcurrencyTTL (its lease), so that the slots of a crashed
// instance free themselves however busy the counter is; the key lives
// as long as its newest lease.
//
// A call is bounded by Timeout alone, not by the caller's context: a
// release after the client went away must still reach Redis.
//
// When Redis cannot be reached within Timeout, OnError decides: allow
// (the default) reserves on the local store instead, so the local limits
// still apply, and the Verdict's Store says so; deny answers not OK. Each
// such error is counted (Errors) and logged at most once per LogInterval.
// A Redis error on Adjust is counted, logged and returned. What the local
// store took in place of a reservation that certainly did not reach
// Redis (no connection; concurrency aside), and an adjustment that did
// not either, are owed to Redis and sent after the next reservation it
// answers (see owed). A call lost to a timeout on an open connection is
// not owed, as Redis may have run it: its counter then keeps the amount
// until it drains or its key expires.
//
// A single Redis (or a primary) only: the keys of one reservation may
// lie in different slots of a Redis Cluster.
//
// go-redis itself logs failed dials on its process-wide logger
// (redis.SetLogger), a line each until its pool stops dialling.
type Redis struct {
	client   *redis.Client
	prefix   string
	timeout  time.Duration
	onError  OnError
	local    Store
	idleMs   string        // ConcurrencyTTL in ms
	lease    time.Duration // ConcurrencyTTL
	id       string        // this store's prefix of slot names
	slots    atomic.Uint64 // slots named
	failures *Failures
	owed     owed // what Redis has not been told yet

	held      atomic.Int64 // reservations held on Redis, not yet settled
	closing   atomic.Bool  // CloseWhenSettled was called
	closeOnce sync.Once
}

// OnError is what a Redis store does when Redis cannot be reached.
type OnError uint8

// The policies on a Redis error.
const (
	// OnErrorAllow reserves on the local store: local limits apply.
	OnErrorAllow OnError = iota
	// OnErrorDeny answers not OK.
	OnErrorDeny
)

func (p OnError) String() string {
	if p == OnErrorDeny {
		return "deny"
	}
	return "allow"
}

// ParseOnError parses "allow" or "deny".
func ParseOnError(s string) (OnError, error) {
	switch s {
	case "allow":
		return OnErrorAllow, nil
	case "deny":
		return OnErrorDeny, nil
	}
	return 0, fmt.Errorf("on_error must be allow or deny, got %q", s)
}

// MarshalText implements encoding.TextMarshaler.
func (p OnError) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *OnError) UnmarshalText(b []byte) error {
	v, err := ParseOnError(string(b))
	if err == nil {
		*p = v
	}
	return err
}

// RedisOptions configure a Redis store.
type RedisOptions struct {
	// URL is redis://[user:password@]host[:port][/db] or rediss:// for
	// TLS; placeholders must be replaced before.
	URL string
	// Username and Password, when set, replace those of the URL.
	Username, Password string
	// Timeout bounds each call to Redis, connecting included; default
	// 100ms. A request never waits on Redis longer.
	Timeout time.Duration
	// OnError is what to do when Redis cannot be reached; default allow.
	OnError OnError
	// Prefix starts every key; default "llm_route:".
	Prefix string
	// ConcurrencyTTL is the longest a request holds its slot on a
	// counter that neither drains nor expires (max_concurrent): a
	// request under way longer no longer counts; default 10m.
	ConcurrencyTTL time.Duration
	// Local is the store reserved on when Redis cannot be reached and
	// OnError is allow; default a new Memory.
	Local Store
	// Logger logs Redis errors, at most one line per LogInterval (default
	// 1m); nil: not logged.
	Logger      *zap.Logger
	LogInterval time.Duration
}

// The defaults of RedisOptions.
const (
	DefaultRedisTimeout   = 100 * time.Millisecond
	DefaultRedisPrefix    = "llm_route:"
	DefaultConcurrencyTTL = 10 * time.Minute
)

// unavailableWait is the Retry-After of a reservation denied because
// Redis could not be reached.
const unavailableWait = time.Second

// ttlMargin is how long a calendar or draining counter outlives its
// window or its drain, in ms: room for clock skew between instances.
const ttlMargin = "60000"

// NewRedis returns a Redis store. It does not connect: the first call
// does, and a Redis that is down at start is handled like one that goes
// down later.
func NewRedis(o RedisOptions) (*Redis, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		// url.Error quotes the URL, password included: leave it out.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis URL: %v", err)
	}
	if o.Username != "" {
		opt.Username = o.Username
	}
	if o.Password != "" {
		opt.Password = o.Password
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.ConcurrencyTTL <= 0 {
		o.ConcurrencyTTL = DefaultConcurrencyTTL
	}
	if o.Local == nil {
		o.Local = NewMemory()
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.OnError > OnErrorDeny {
		return nil, fmt.Errorf("unknown on_error policy %d", o.OnError)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	opt.ContextTimeoutEnabled = true
	// A script is not idempotent: a retry after a lost reply would
	// reserve twice. One dial per call, no pause after a failed one.
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.DialerRetryTimeout = time.Microsecond
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return &Redis{
		client:   redis.NewClient(opt),
		prefix:   o.Prefix,
		timeout:  o.Timeout,
		onError:  o.OnError,
		local:    o.Local,
		idleMs:   strconv.FormatInt(o.ConcurrencyTTL.Milliseconds(), 10),
		lease:    o.ConcurrencyTTL,
		id:       instanceID(),
		failures: NewFailures(o.Logger, o.LogInterval, "redis state: call failed", zap.String("on_error", o.OnError.String())),
	}, nil
}

// Close closes the connections to Redis.
func (r *Redis) Close() error { return r.client.Close() }

// CloseWhenSettled closes the connections to Redis once every
// reservation held on Redis has been settled or released, or after
// ConcurrencyTTL at the latest, and returns at once: a config reload
// that drops the store must not strand the requests still under way,
// whose settlements would fail and leave their amounts (and their
// slots) on the fleet's counters.
func (r *Redis) CloseWhenSettled() {
	r.closing.Store(true)
	if r.held.Load() == 0 {
		r.closeNow()
		return
	}
	time.AfterFunc(r.lease, r.closeNow)
}

func (r *Redis) closeNow() { r.closeOnce.Do(func() { _ = r.client.Close() }) }

// settled notes that a reservation held on Redis was settled or
// released.
func (r *Redis) settled() {
	if r.held.Add(-1) == 0 && r.closing.Load() {
		r.closeNow()
	}
}

// Client returns the go-redis client, for other state kept in the same
// Redis: its calls are bounded by Timeout (connecting included) and are
// never retried.
func (r *Redis) Client() *redis.Client { return r.client }

// Prefix returns the prefix of every key.
func (r *Redis) Prefix() string { return r.prefix }

// Timeout returns the longest a call waits on Redis.
func (r *Redis) Timeout() time.Duration { return r.timeout }

// Errors returns how many calls to Redis have failed.
func (r *Redis) Errors() uint64 { return r.failures.Count() }

// Ping checks that Redis answers within the timeout.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := r.callContext(ctx)
	defer cancel()
	return r.client.Ping(ctx).Err()
}

// The scripts. ARGV[1] is now (unix ms), ARGV[2] the TTL margin of
// calendar and draining counters (ms), ARGV[3] the lease of a slot (ms);
// then six per key: limit, rate (per second), expires (unix ms; 0:
// never), amount, the slot ("" but on a concurrency counter), and the
// change of the amount held for requests under way (field h). level
// and put do what level and Memory.add do; a counter at 0 is deleted, as
// it reads as a missing one. A concurrency counter is a sorted set of
// slots scored by the end of their lease instead: its level is the
// number of slots whose lease has not ended, a positive amount takes the
// slot, a negative one gives it back. Numbers go back as strings: Redis
// truncates a Lua number in a reply to an integer.
const luaCommon = `
local now, margin, idle = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function arg(i, j) return tonumber(ARGV[3 + (i - 1) * 6 + j]) end
local function slot(i) return ARGV[3 + (i - 1) * 6 + 5] end
local function fmt(x) return string.format('%.17g', x) end
local function slots(key)
	redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now))
	return redis.call('ZCARD', key)
end
local function level(key, rate, expires, slot)
	if slot ~= '' then return slots(key), 0 end
	if expires > 0 and now >= expires then return 0, 0 end
	local h = redis.call('HMGET', key, 'v', 's', 'h')
	local v, s, held = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]) or 0
	if not v then return 0, 0 end
	if rate > 0 and s and now > s then v = v - rate * ((now - s) / 1000) end
	if v > 0 then return v, held end
	return 0, held
end
local function put(key, v, held, rate, expires)
	if not (v > 0) then
		redis.call('DEL', key)
		return 0
	end
	local ttl
	if expires > 0 then
		if now >= expires then
			redis.call('DEL', key)
			return v
		end
		ttl = expires - now + margin
	end
	if rate > 0 then
		local d = math.ceil(v / rate * 1000) + margin
		if not ttl or d < ttl then ttl = d end
	end
	redis.call('HSET', key, 'v', fmt(v), 's', string.format('%.0f', now), 'h', fmt(math.max(held, 0)))
	redis.call('PEXPIRE', key, string.format('%.0f', ttl or idle))
	return v
end
local function add(i)
	local rate, expires, s = arg(i, 2), arg(i, 3), slot(i)
	if s ~= '' then
		slots(KEYS[i])
		if arg(i, 4) > 0 then
			redis.call('ZADD', KEYS[i], string.format('%.0f', now + idle), s)
			redis.call('PEXPIRE', KEYS[i], string.format('%.0f', idle))
		else
			redis.call('ZREM', KEYS[i], s)
		end
		return redis.call('ZCARD', KEYS[i])
	end
	local v, held = level(KEYS[i], rate, expires, '')
	return put(KEYS[i], v + arg(i, 4), held + arg(i, 6), rate, expires)
end
`

// reserveScript returns {1, value after, ...} when every counter had
// room, or {0, index, level, held, ...} for those that had not.
var reserveScript = redis.NewScript(luaCommon + `
local denied = {0}
for i = 1, #KEYS do
	local limit, amount = arg(i, 1), arg(i, 4)
	local v, held = level(KEYS[i], arg(i, 2), arg(i, 3), slot(i))
	if not (v <= 0 or v + amount <= limit) then
		denied[#denied + 1] = i - 1
		denied[#denied + 1] = fmt(v)
		denied[#denied + 1] = fmt(held)
	end
end
if #denied > 1 then return denied end
local out = {1}
for i = 1, #KEYS do out[i + 1] = fmt(add(i)) end
return out
`)

// adjustScript adds every amount.
var adjustScript = redis.NewScript(luaCommon + `
for i = 1, #KEYS do add(i) end
return 1
`)

// Reserve implements Store.
func (r *Redis) Reserve(ctx context.Context, charges []Charge, now time.Time) (Verdict, error) {
	if len(charges) == 0 {
		return Verdict{OK: true}, nil
	}
	// Counted as held before the script runs, so that a close waiting
	// for the reservations held (CloseWhenSettled) cannot come between
	// the script's success and the count.
	r.held.Add(1)
	v, err := r.reserve(ctx, charges, now)
	if err == nil {
		r.pay(ctx, now)
	}
	if err != nil || !v.OK {
		r.settled()
	}
	if err == nil {
		return v, nil
	}
	r.failures.Add(err)
	if r.onError == OnErrorDeny {
		return Verdict{RetryAfter: unavailableWait, Unavailable: true}, nil
	}
	// What the local store takes is owed to Redis, unless the script
	// may have run there all the same (a timeout on an open
	// connection): then Redis may hold the reservation already.
	var local Store = r.local
	if unsent(err) {
		local = fallback{r}
	}
	v, err = local.Reserve(ctx, charges, now)
	v.Store = local
	return v, err
}

func (r *Redis) reserve(ctx context.Context, charges []Charge, now time.Time) (Verdict, error) {
	r.takeSlots(charges)
	keys, args := r.args(charges, now, true)
	ctx, cancel := r.callContext(ctx)
	defer cancel()
	res, err := reserveScript.Run(ctx, r.client, keys, args...).Slice()
	if err != nil {
		return Verdict{}, err
	}
	bad := fmt.Errorf("redis: unexpected reply to the reserve script: %v", res)
	if len(res) == 0 {
		return Verdict{}, bad
	}
	switch ok, _ := res[0].(int64); {
	case ok == 1 && len(res) == len(charges)+1:
		for i := range charges {
			v, err := parseFloat(res[i+1])
			if err != nil {
				return Verdict{}, bad
			}
			charges[i].Left = charges[i].Counter.Limit - v
		}
		return Verdict{OK: true}, nil
	case ok == 0 && len(res) >= 4 && len(res)%3 == 1:
		denied := Verdict{Denied: -1}
		for j := 1; j < len(res); j += 3 {
			i, _ := res[j].(int64)
			v, err := parseFloat(res[j+1])
			held, herr := parseFloat(res[j+2])
			if err != nil || herr != nil || i < 0 || int(i) >= len(charges) {
				return Verdict{}, bad
			}
			ch := charges[i]
			_, wait := room(ch.Counter, v, held, ch.Amount, now)
			denied.deny(int(i), wait)
		}
		return denied, nil
	}
	return Verdict{}, bad
}

// Adjust implements Store. A Redis error is returned whatever OnError
// says: the amounts were reserved on Redis and only Redis can take them
// back (Verdict.Store sends the adjustments of a local reservation to
// the local store).
func (r *Redis) Adjust(ctx context.Context, charges []Charge, now time.Time) error {
	if len(charges) == 0 {
		return nil
	}
	defer r.settled()
	if err := r.adjust(ctx, charges, now); err != nil {
		r.failures.Add(err)
		if unsent(err) {
			r.owed.add(charges, now, true)
		}
		return fmt.Errorf("redis state: %w", err)
	}
	return nil
}

// adjust runs the adjust script on charges.
func (r *Redis) adjust(ctx context.Context, charges []Charge, now time.Time) error {
	keys, args := r.args(charges, now, false)
	ctx, cancel := r.callContext(ctx)
	defer cancel()
	return adjustScript.Run(ctx, r.client, keys, args...).Err()
}

// callContext bounds a call by the timeout. It does not end with the
// caller's context: a release when the client has gone away must still
// reach Redis.
func (r *Redis) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
}

// args returns the scripts' KEYS and ARGV for charges at now, reserved
// or adjusted.
func (r *Redis) args(charges []Charge, now time.Time, reserving bool) ([]string, []any) {
	keys := make([]string, len(charges))
	args := make([]any, 3, 3+6*len(charges))
	args[0], args[1], args[2] = strconv.FormatInt(now.UnixMilli(), 10), ttlMargin, r.idleMs
	for i, ch := range charges {
		c := ch.Counter
		keys[i] = r.key(c)
		var expires int64
		if !c.Expires.IsZero() {
			expires = c.Expires.UnixMilli()
		}
		held := ch.Held
		if reserving {
			held = holds(ch)
		}
		args = append(args, formatFloat(c.Limit), formatFloat(c.Rate),
			strconv.FormatInt(expires, 10), formatFloat(ch.Amount), ch.Slot, formatFloat(held))
	}
	return keys, args
}

// slotted reports whether a counter holds slots: it neither drains nor
// expires (concurrency).
func slotted(c Counter) bool { return c.Rate == 0 && c.Expires.IsZero() }

// slotSuffix ends the key of a counter of slots, a sorted set: apart from
// the hash an older version kept at the counter's key.
const slotSuffix = "|slots"

// key is the Redis key of a counter.
func (r *Redis) key(c Counter) string {
	if slotted(c) {
		return r.prefix + c.Key + slotSuffix
	}
	return r.prefix + c.Key
}

// takeSlots names a slot for each charge on a counter of slots: unique
// to this reservation, so that its release gives back its own slot.
func (r *Redis) takeSlots(charges []Charge) {
	for i := range charges {
		if slotted(charges[i].Counter) {
			charges[i].Slot = r.id + strconv.FormatUint(r.slots.Add(1), 36)
		}
	}
}

// instanceID names a store's slots apart from every other store's.
func instanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + ":"
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func parseFloat(x any) (float64, error) {
	s, ok := x.(string)
	if !ok {
		return 0, fmt.Errorf("not a string: %T", x)
	}
	return strconv.ParseFloat(s, 64)
}

// Interface guards
var _ Store = (*Redis)(nil)
