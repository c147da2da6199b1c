package upstreams

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/limits"
)

// Shared shares the health and the live stats of its pairs with the
// other instances of a fleet through Redis, so that one instance's
// discovery of a failing provider protects them all.
//
// Requests never wait on Redis: each pair keeps its state in this
// process (as a memory-only pair does) and reads it alone on the hot
// path, merged with the fleet's view as last polled. One goroutine per
// Shared does the I/O: it runs while a pair uses the Shared and, every
// Interval, sends one pipeline for all of them; in between it sends the
// cooldowns that requests open or close as soon as they change.
//
// Cooldowns. A failure that opens or extends a cooldown (a 429's
// Retry-After included) sets Prefix+"cool:"+PairKey to its end (unix
// ms) unless it holds a later one. A success that closes a cooldown (a
// last-resort attempt on a cooling pair, or a half-open probe) deletes
// it, which closes the cooldown the other instances had from the fleet,
// and their own if it was no later. The key lives until the cooldown
// ends plus a minute (a relative TTL: Redis' clock does not matter). A
// pair is unavailable while this process's or the fleet's cooldown
// runs, until its probe time: a cooldown of the gateway's own (not a
// Retry-After) carries the time from which its instance lets a probe
// through (probe_interval, see Policy), and every instance that reads it
// lets one of its own through from then too. Once the fleet's cooldown
// runs out (or its probe time comes), half-open probes stay local:
// each instance probes the pair for itself, one request at a time, and
// a successful probe closes the cooldown there. A cooldown that ended
// before an instance saw it running does not concern that instance.
//
// Stats. Each instance writes its stats of each pair (the EWMAs and
// their sample counts, the attempts in flight, the time) to its own
// field (its instance id) of the hash Prefix+"stats:"+PairKey, whose TTL
// (StatsTTL) every write renews, and reads the other fields. Snapshot
// merges them: each EWMA weighted by its own number of samples,
// in-flight counts and samples summed. An entry older than StatsTTL (an
// instance gone) is left out and deleted. Instances' clocks are assumed
// to agree within seconds.
//
// A Redis error never reaches a request: the pairs go on with their
// last view of the fleet (the other instances' stats dropped once
// StatsTTL passed without a poll), and a cooldown that could not be
// sent is sent again until it ends. While Redis fails, the polls back
// off up to 16 intervals apart (limits.SyncLoop). Each error is counted
// (Errors) and logged at most one line a minute, and the recovery
// once Redis answers again.
type Shared struct {
	client   *redis.Client
	prefix   string
	timeout  time.Duration
	interval time.Duration
	statsTTL time.Duration
	id       string
	failures *limits.Failures
	after    func(time.Duration) <-chan time.Time // the loop's clock

	wake chan struct{} // a cooldown to send; capacity 1

	mu      sync.Mutex
	pairs   map[*sharedPair]struct{}
	pending map[*sharedPair]coolOp // cooldowns to send
	stop    context.CancelFunc     // the loop's; nil while none runs
	done    chan struct{}          // closed when that loop has returned
	closed  bool
}

// SharedOptions configure a Shared.
type SharedOptions struct {
	// Client is the connection to Redis. Its own timeouts should not
	// exceed Timeout, and a failed call should not be retried (as a
	// limits.Redis client is set up).
	Client *redis.Client
	// Prefix starts every key; default "llm_route:".
	Prefix string
	// Timeout bounds each exchange with Redis; default 100ms.
	Timeout time.Duration
	// Interval is how often the pairs' stats and cooldowns are
	// exchanged; default 1s.
	Interval time.Duration
	// StatsTTL is how long an instance's stats count after its last
	// write; default 30s, and at least three intervals.
	StatsTTL time.Duration
	// Logger logs Redis errors, at most one line a minute
	// (limits.DefaultLogInterval), and their end; nil: not logged.
	Logger *zap.Logger
	// After is the clock of the goroutine's waits (limits.SyncLoop);
	// nil: time.After. Tests replace it.
	After func(time.Duration) <-chan time.Time
}

// The defaults of SharedOptions.
const (
	DefaultSyncInterval = time.Second
	DefaultStatsTTL     = 30 * time.Second
)

// coolMargin is how long a cooldown's key outlives the cooldown.
const coolMargin = time.Minute

// NewShared returns a Shared for the pairs acquired with it. It does
// not connect: its goroutine runs while pairs use it. Close it after
// releasing them.
func NewShared(o SharedOptions) *Shared {
	if o.Prefix == "" {
		o.Prefix = "llm_route:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.Interval <= 0 {
		o.Interval = DefaultSyncInterval
	}
	if o.StatsTTL <= 0 {
		o.StatsTTL = DefaultStatsTTL
	}
	o.StatsTTL = max(o.StatsTTL, 3*o.Interval)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Shared{
		client:   o.Client,
		prefix:   o.Prefix,
		timeout:  o.Timeout,
		interval: o.Interval,
		statsTTL: o.StatsTTL,
		id:       hex.EncodeToString(b[:]),
		failures: limits.NewFailures(o.Logger, 0, "redis state: sharing cooldowns and stats failed"),
		after:    o.After,
		wake:     make(chan struct{}, 1),
		pairs:    make(map[*sharedPair]struct{}),
	}
}

// Errors returns how many exchanges with Redis have failed.
func (s *Shared) Errors() uint64 { return s.failures.Count() }

// Close stops the goroutine, if it runs, and waits until it has
// returned; pairs acquired after it are not shared any more.
func (s *Shared) Close() {
	s.mu.Lock()
	s.closed = true
	stop, done := s.stop, s.done
	s.stop, s.done = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// newPair returns a pair shared under key (its PairKey) and starts the
// goroutine if it is the first.
func (s *Shared) newPair(key string) *sharedPair {
	p := &sharedPair{shared: s, coolKey: s.prefix + "cool:" + key, statsKey: s.prefix + "stats:" + key}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pairs[p] = struct{}{}
	if s.stop == nil && !s.closed {
		ctx, stop := context.WithCancel(context.Background())
		s.stop, s.done = stop, make(chan struct{})
		go s.run(ctx, s.done)
	}
	return p
}

// remove stops sharing p, and stops the goroutine after the last pair:
// it returns once the goroutine has, which may take an exchange with
// Redis under way (at most the timeout).
func (s *Shared) remove(p *sharedPair) {
	s.mu.Lock()
	delete(s.pairs, p)
	delete(s.pending, p)
	if len(s.pairs) > 0 || s.stop == nil {
		s.mu.Unlock()
		return
	}
	stop, done := s.stop, s.done
	s.stop, s.done = nil, nil
	s.mu.Unlock()
	stop()
	<-done
}

// coolOp is a cooldown to send: delete the key, then set until (if
// not zero) unless the key holds a later one.
type coolOp struct {
	del            bool
	until, probeAt time.Time
}

// publish queues the change of p's health for the goroutine; p.mu is
// held, so that the changes of one pair queue in their order.
func (s *Shared) publish(p *sharedPair, c healthChange) {
	s.mu.Lock()
	if _, ok := s.pairs[p]; !ok || s.stop == nil {
		s.mu.Unlock()
		return // released: nobody here reads the pair any more
	}
	op := s.pending[p]
	if c.closed {
		op = coolOp{del: true}
	}
	if c.until.After(op.until) {
		op.until, op.probeAt = c.until, c.probeAt
	}
	if s.pending == nil {
		s.pending = make(map[*sharedPair]coolOp)
	}
	s.pending[p] = op
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the goroutine: it polls at once and every interval (backing
// off while Redis fails), and sends queued cooldowns when woken.
func (s *Shared) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	l := &syncLoop{Shared: s, written: make(map[*sharedPair]bool), stale: make(map[*sharedPair][]string), lastOK: time.Now()}
	loop := limits.SyncLoop{Interval: s.interval, Failures: s.failures, After: s.after,
		Wake: s.wake, Woken: func(ctx context.Context) error { return l.sync(ctx, false) }}
	loop.Run(ctx, func(ctx context.Context) error { return l.sync(ctx, true) })
}

// syncLoop is the state of one run of the goroutine.
type syncLoop struct {
	*Shared
	written map[*sharedPair]bool     // pairs whose stats this instance wrote
	stale   map[*sharedPair][]string // fields of instances gone, to delete
	lastOK  time.Time                // the last poll that read every pair
}

// setLater sets KEYS[1] to ARGV[1] with a TTL of ARGV[2] ms unless it
// holds a cooldown that ends as late. The value is the cooldown's end
// and, when a probe may go through it before, the probe's time (unix
// ms): "<until>[ <probe>]".
const setLater = `
local cur = tonumber(string.match(redis.call('GET', KEYS[1]) or '', '^%d+'))
if cur and cur >= tonumber(string.match(ARGV[1], '^%d+')) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

// coolValue is the value of a cooldown's key (see setLater).
func coolValue(op coolOp) string {
	v := strconv.FormatInt(op.until.UnixMilli(), 10)
	if !op.probeAt.IsZero() {
		v += " " + strconv.FormatInt(op.probeAt.UnixMilli(), 10)
	}
	return v
}

// parseCool reads a cooldown's key: its end and its probe time (zero:
// none).
func parseCool(v string) (until, probeAt time.Time) {
	u, pr, _ := strings.Cut(v, " ")
	if ms, err := strconv.ParseInt(u, 10, 64); err == nil && ms > 0 {
		until = time.UnixMilli(ms)
	}
	if ms, err := strconv.ParseInt(pr, 10, 64); err == nil && ms > 0 && !until.IsZero() {
		probeAt = time.UnixMilli(ms)
	}
	return until, probeAt
}

// sync sends the queued cooldowns and, when poll is set, writes this
// instance's stats of every pair and reads the fleet's cooldowns and
// stats, all in one pipeline bounded by the timeout. It returns the
// exchange's error when Redis did not answer; an error reply to some of
// its commands is counted here, and the exchange is a success.
func (l *syncLoop) sync(ctx context.Context, poll bool) error {
	var pairs []*sharedPair
	if poll {
		l.mu.Lock()
		pairs = make([]*sharedPair, 0, len(l.pairs))
		for p := range l.pairs {
			pairs = append(pairs, p)
		}
		l.mu.Unlock()
		l.forget(pairs)
	}
	// The health generations are read before the queue is taken: a
	// reading of a pair whose generation moved since may predate a
	// change still queued, and is not applied.
	now := time.Now()
	gens := make([]uint64, len(pairs))
	encs := make([]string, len(pairs))
	for i, p := range pairs {
		var some bool
		encs[i], some, gens[i] = p.local(now)
		if !some && !l.written[p] {
			encs[i] = "" // nothing to tell yet
		}
	}
	l.mu.Lock()
	ops := l.pending
	l.pending = nil
	l.mu.Unlock()
	if len(ops) == 0 && len(pairs) == 0 {
		return nil
	}

	pipe := l.client.Pipeline()
	type set struct {
		p   *sharedPair
		op  coolOp
		cmd *redis.Cmd
	}
	var sets []set
	for p, op := range ops {
		if op.del {
			pipe.Del(ctx, p.coolKey)
		}
		if op.until.After(now) {
			ttl := op.until.Sub(now) + coolMargin
			sets = append(sets, set{p, op, pipe.Eval(ctx, setLater, []string{p.coolKey}, coolValue(op), ttl.Milliseconds())})
		}
	}
	var cools *redis.SliceCmd
	stats := make([]*redis.MapStringStringCmd, len(pairs))
	if len(pairs) > 0 {
		keys := make([]string, len(pairs))
		for i, p := range pairs {
			keys[i] = p.coolKey
		}
		cools = pipe.MGet(ctx, keys...)
		for i, p := range pairs {
			if encs[i] != "" {
				pipe.HSet(ctx, p.statsKey, l.id, encs[i])
				pipe.PExpire(ctx, p.statsKey, l.statsTTL)
				l.written[p] = true
			}
			if f := l.stale[p]; len(f) > 0 {
				pipe.HDel(ctx, p.statsKey, f...)
				delete(l.stale, p)
			}
			stats[i] = pipe.HGetAll(ctx, p.statsKey)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	_, err := pipe.Exec(cctx)
	cancel()
	if ctx.Err() != nil {
		return nil // stopping
	}
	now = time.Now()
	// The replies count when the exchange went through, though a command
	// may have got an error reply; after any other error (the connection,
	// the timeout) none does.
	answered := true
	if err != nil {
		var reply redis.Error
		answered = errors.As(err, &reply)
		l.requeue(ops, now)
	}
	if !answered {
		pairs = nil
	}
	for _, w := range sets {
		if answered && w.cmd.Err() == nil {
			w.p.fleetHolds(w.op.until, w.op.probeAt)
		}
	}
	if len(pairs) > 0 && cools.Err() == nil && len(cools.Val()) == len(pairs) {
		vals := cools.Val()
		for i, p := range pairs {
			var until, probeAt time.Time
			if v, ok := vals[i].(string); ok {
				until, probeAt = parseCool(v)
			}
			p.observeFleet(until, probeAt, gens[i], now)
		}
	}
	read := 0
	for i, p := range pairs {
		if stats[i].Err() == nil {
			p.others.Store(l.merge(p, stats[i].Val(), now))
			read++
		}
	}
	switch {
	case !poll:
	case answered && read == len(pairs):
		l.lastOK = now
	case now.Sub(l.lastOK) > l.statsTTL:
		// No word from the fleet for too long: this process's own stats.
		l.mu.Lock()
		for p := range l.pairs {
			p.others.Store(nil)
		}
		l.mu.Unlock()
	}
	if err != nil && answered {
		// Redis answered, with an error for some command (a key of
		// another type, a write refused for memory): counted and
		// logged, but the exchange goes on every interval, as what it
		// read is used.
		l.failures.Note(err)
		return nil
	}
	return err
}

// forget drops what the loop knows of pairs no longer shared.
func (l *syncLoop) forget(pairs []*sharedPair) {
	if len(l.written) == 0 && len(l.stale) == 0 {
		return
	}
	used := make(map[*sharedPair]bool, len(pairs))
	for _, p := range pairs {
		used[p] = true
	}
	for p := range l.written {
		if !used[p] {
			delete(l.written, p)
		}
	}
	for p := range l.stale {
		if !used[p] {
			delete(l.stale, p)
		}
	}
}

// requeue queues again the cooldowns a failed exchange may not have
// set, unless a later change replaced them; a deletion is not sent
// again (the cooldown ends by itself).
func (l *syncLoop) requeue(ops map[*sharedPair]coolOp, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, op := range ops {
		if _, used := l.pairs[p]; !used || !op.until.After(now) {
			continue
		}
		if _, newer := l.pending[p]; newer {
			continue
		}
		if l.pending == nil {
			l.pending = make(map[*sharedPair]coolOp)
		}
		l.pending[p] = coolOp{until: op.until, probeAt: op.probeAt}
	}
}

// merge sums up the other instances' fresh entries of p's stats hash
// and notes the stale ones for deletion.
func (l *syncLoop) merge(p *sharedPair, fields map[string]string, now time.Time) *fleetStats {
	var f fleetStats
	n := 0
	for id, v := range fields {
		if id == l.id {
			continue
		}
		e, ok := decodeStats(v)
		if !ok || now.Sub(e.stamp) > l.statsTTL {
			l.stale[p] = append(l.stale[p], id)
			continue
		}
		f.add(e)
		n++
	}
	if n == 0 {
		return nil
	}
	return &f
}

// sharedPair is a pair whose cooldowns and stats are shared by a
// Shared. Its memoryPair is this process's state; Available, Start and
// CooldownUntil read it with the fleet's cooldown, Snapshot merges the
// other instances' stats as last polled.
type sharedPair struct {
	memoryPair
	shared            *Shared
	coolKey, statsKey string
	others            atomic.Pointer[fleetStats] // nil: none
}

// Finish implements Pair.
func (p *sharedPair) Finish(o Outcome, policy Policy, now time.Time) {
	p.finish(o, policy, now, p)
}

// changed implements healthSink: it queues the change for the fleet.
func (p *sharedPair) changed(c healthChange) { p.shared.publish(p, c) }

// Snapshot implements Pair.
func (p *sharedPair) Snapshot() Stats {
	f := p.others.Load()
	if f == nil {
		return p.memoryPair.Snapshot()
	}
	p.mu.Lock()
	s := Stats{
		LatencyMs:       f.latency.with(p.latencyMs),
		TTFTMs:          f.ttft.with(p.ttftMs),
		TokensPerSecond: f.tps.with(p.tps),
		ErrorRate:       f.errorRate.with(p.errorRate),
		Samples:         p.errorRate.n + f.errorRate.n,
	}
	p.mu.Unlock()
	s.InFlight = p.inFlight.Load() + f.inFlight
	return s
}

// local returns the encoding of this process's stats, whether there is
// anything in them, and the health generation.
func (p *sharedPair) local(now time.Time) (enc string, some bool, gen uint64) {
	p.mu.Lock()
	e := statsEntry{
		stamp:     now,
		inFlight:  p.inFlight.Load(),
		latency:   p.latencyMs,
		ttft:      p.ttftMs,
		tps:       p.tps,
		errorRate: p.errorRate,
	}
	gen = p.changes
	p.mu.Unlock()
	some = e.inFlight != 0 || e.errorRate.n != 0 || e.latency.n != 0 || e.ttft.n != 0 || e.tps.n != 0
	return e.encode(), some, gen
}

// fleetHolds notes that the fleet holds a cooldown this process wrote,
// if it is still this process's own: another instance's successful probe
// that removes it then closes it here too, even when no poll of this
// process read it in between.
func (p *sharedPair) fleetHolds(until, probeAt time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.until.Equal(until) && until.After(p.fleet) {
		p.fleet, p.fleetProbe = until, probeAt
	}
}

// observeFleet takes the fleet's cooldown as read at a health generation
// (zero: none), unless this process's health changed since.
func (p *sharedPair) observeFleet(until, probeAt time.Time, gen uint64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changes != gen {
		return
	}
	switch {
	case until.After(now):
		p.fleet, p.fleetProbe = until, probeAt
		if limit := now.Add(MaxCooldown); until.After(limit) {
			p.fleet = limit
		}
	case p.fleet.After(now):
		// It went away before its end: a success elsewhere closed it,
		// and with it this process's cooldown if no later.
		// (The fleet's times are whole ms.)
		if p.until.UnixMilli() <= p.fleet.UnixMilli() {
			p.fails, p.until = 0, time.Time{}
		}
		p.fleet, p.fleetProbe = time.Time{}, time.Time{}
	}
	// A fleet cooldown that ran out stays: the pair is half-open here
	// until a probe of this process succeeds. One that ended before this
	// process saw it running does not concern it.
}

// statsEntry is one instance's stats of a pair, as kept in Redis.
type statsEntry struct {
	stamp                         time.Time
	inFlight                      int64
	latency, ttft, tps, errorRate avg
}

// encode returns "1 <stamp ms> <in flight>" and then, for latency, TTFT,
// tokens/s and error rate, "<value> <samples>".
func (e statsEntry) encode() string {
	b := make([]byte, 0, 96)
	b = append(b, '1', ' ')
	b = strconv.AppendInt(b, e.stamp.UnixMilli(), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.inFlight, 10)
	for _, a := range [...]avg{e.latency, e.ttft, e.tps, e.errorRate} {
		b = append(b, ' ')
		b = strconv.AppendFloat(b, a.v, 'g', 6, 64)
		b = append(b, ' ')
		b = strconv.AppendInt(b, a.n, 10)
	}
	return string(b)
}

// decodeStats parses an encoding; ok is false for anything else.
func decodeStats(s string) (e statsEntry, ok bool) {
	f := strings.Fields(s)
	if len(f) != 11 || f[0] != "1" {
		return e, false
	}
	ms, err1 := strconv.ParseInt(f[1], 10, 64)
	inFlight, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || inFlight < 0 {
		return e, false
	}
	e.stamp, e.inFlight = time.UnixMilli(ms), inFlight
	for i, a := range [...]*avg{&e.latency, &e.ttft, &e.tps, &e.errorRate} {
		v, err1 := strconv.ParseFloat(f[3+2*i], 64)
		n, err2 := strconv.ParseInt(f[4+2*i], 10, 64)
		if err1 != nil || err2 != nil || n < 0 || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return statsEntry{}, false
		}
		a.v, a.n = v, n
	}
	return e, true
}

// fleetStats are the other instances' stats of a pair, summed up.
type fleetStats struct {
	latency, ttft, tps, errorRate weighted
	inFlight                      int64
}

func (f *fleetStats) add(e statsEntry) {
	f.latency.add(e.latency)
	f.ttft.add(e.ttft)
	f.tps.add(e.tps)
	f.errorRate.add(e.errorRate)
	f.inFlight += e.inFlight
}

// weighted sums averages weighted by their samples.
type weighted struct {
	sum float64 // of value × samples
	n   int64
}

func (w *weighted) add(a avg) {
	if a.n > 0 {
		w.sum += a.v * float64(a.n)
		w.n += a.n
	}
}

// with returns the samples-weighted mean of the sum and a.
func (w weighted) with(a avg) float64 {
	n := w.n + a.n
	if n == 0 {
		return 0
	}
	return (w.sum + a.v*float64(a.n)) / float64(n)
}

// Interface guards
var _ Pair = (*sharedPair)(nil)
