package limits

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reader is a Store whose counters can be read without changing them,
// for the admin API's view of quota usage.
type Reader interface {
	// Levels returns the value of each counter at now.
	Levels(ctx context.Context, counters []Counter, now time.Time) ([]float64, error)
}

// Levels implements Reader.
func (m *Memory) Levels(_ context.Context, counters []Counter, now time.Time) ([]float64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]float64, len(counters))
	for i, c := range counters {
		out[i], _ = m.level(c, now)
	}
	return out, nil
}

// Levels implements Reader: one pipeline of reads, bounded by the
// store's timeout. While Redis cannot be reached it answers with the
// local store's levels (what on_error allow reserves on) and the error.
func (r *Redis) Levels(ctx context.Context, counters []Counter, now time.Time) ([]float64, error) {
	ctx, cancel := r.callContext(ctx)
	defer cancel()
	pipe := r.client.Pipeline()
	for _, c := range counters {
		if slotted(c) {
			pipe.ZCount(ctx, r.key(c), "("+strconv.FormatInt(now.UnixMilli(), 10), "+inf")
		} else {
			pipe.HMGet(ctx, r.key(c), "v", "s")
		}
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		if lr, ok := r.local.(Reader); ok {
			out, _ := lr.Levels(ctx, counters, now)
			return out, err
		}
		return make([]float64, len(counters)), err
	}
	out := make([]float64, len(counters))
	for i, cmd := range cmds {
		if n, ok := cmd.(*redis.IntCmd); ok {
			out[i] = float64(n.Val())
			continue
		}
		vals := cmd.(interface{ Val() []any }).Val()
		if len(vals) != 2 || vals[0] == nil {
			continue
		}
		v, err := parseFloat(vals[0])
		if err != nil {
			continue
		}
		var stamp time.Time
		if s, err := parseFloat(vals[1]); err == nil {
			stamp = time.UnixMilli(int64(s))
		}
		out[i] = level(counters[i], v, stamp, now)
	}
	return out, nil
}

// Interface guards
var (
	_ Reader = (*Memory)(nil)
	_ Reader = (*Redis)(nil)
)
