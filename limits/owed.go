package limits

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// owed holds what a Redis store owes Redis: the amounts it reserved and
// adjusted on its local store while Redis could not be reached (on_error
// allow), and the adjustments of reservations held on Redis that could
// not be sent. Without it an outage's spend would be lost to the fleet's
// counters (a daily budget passed by what the outage spent) and a
// concurrency slot whose release failed would stay taken. The next
// reservation Redis answers sends it all in one more round trip.
//
// Each debt follows its counter meanwhile: a drained amount is no longer
// owed, nor one whose window is over.
type owed struct {
	n     atomic.Int32 // len(debts), read on the hot path without mu
	mu    sync.Mutex
	debts map[string]*debt
}

type debt struct {
	counter Counter
	slot    string  // a concurrency counter's: the slot given back
	held    float64 // the change of what the counter holds (see Charge.Held)
	amount  float64
	stamp   time.Time
}

// add notes the charges' amounts as owed: those of adjustments of
// reservations held on Redis when onRedis, with their slots and what
// they held; else those of the local store, but for its slots and what
// it holds, which are its own.
func (o *owed) add(charges []Charge, now time.Time, onRedis bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ch := range charges {
		if !onRedis {
			if ch.Kind == MaxConcurrent {
				continue
			}
			ch.Held = 0
		}
		if ch.Amount == 0 && ch.Held == 0 {
			continue
		}
		if o.debts == nil {
			o.debts = make(map[string]*debt)
		}
		key := ch.Counter.Key
		if ch.Slot != "" {
			key += "\x00" + ch.Slot // each slot is its own
		}
		d := o.debts[key]
		if d == nil {
			d = &debt{}
			o.debts[key] = d
		}
		d.amount = d.at(now) + ch.Amount
		d.held += ch.Held
		d.counter, d.slot, d.stamp = ch.Counter, ch.Slot, now
	}
	o.n.Store(int32(len(o.debts)))
}

// at is the amount still owed at now: none once the window is over; a
// draining counter's drains toward 0 at its rate.
func (d *debt) at(now time.Time) float64 {
	c := d.counter
	if !c.Expires.IsZero() && !now.Before(c.Expires) {
		return 0
	}
	a := d.amount
	if c.Rate > 0 && now.After(d.stamp) {
		drained := c.Rate * now.Sub(d.stamp).Seconds()
		switch {
		case a > 0:
			a = max(a-drained, 0)
		case a < 0:
			a = min(a+drained, 0)
		}
	}
	return a
}

// take returns the charges that pay what is owed at now, and forgets it.
func (o *owed) take(now time.Time) []Charge {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Charge, 0, len(o.debts))
	for key, d := range o.debts {
		over := !d.counter.Expires.IsZero() && !now.Before(d.counter.Expires)
		if a := d.at(now); !over && (a != 0 || d.held != 0) {
			out = append(out, Charge{Counter: d.counter, Amount: a, Slot: d.slot, Held: d.held})
		}
		delete(o.debts, key)
	}
	o.n.Store(0)
	return out
}

// pay sends what is owed to Redis, when anything is; what cannot be sent
// stays owed.
func (r *Redis) pay(ctx context.Context, now time.Time) {
	if r.owed.n.Load() == 0 {
		return
	}
	charges := r.owed.take(now)
	if len(charges) == 0 {
		return
	}
	if err := r.adjust(ctx, charges, now); err != nil {
		r.failures.Add(err)
		if unsent(err) {
			r.owed.add(charges, now, true)
		}
	}
}

// unsent reports whether a failed call certainly did not reach Redis: no
// connection could be had. After a timeout on an open connection Redis
// may still run the script, and sending it again could count it twice.
func unsent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// fallback is the store a reservation made on the local store while
// Redis could not be reached is held on: it settles there, and notes
// what it took as owed to Redis.
type fallback struct{ r *Redis }

// Reserve implements Store: on the local store, owed to Redis.
func (f fallback) Reserve(ctx context.Context, charges []Charge, now time.Time) (Verdict, error) {
	v, err := f.r.local.Reserve(ctx, charges, now)
	if err == nil && v.OK {
		f.r.owed.add(charges, now, false)
	}
	return v, err
}

// Adjust implements Store: on the local store, owed to Redis.
func (f fallback) Adjust(ctx context.Context, charges []Charge, now time.Time) error {
	err := f.r.local.Adjust(ctx, charges, now)
	if err == nil {
		f.r.owed.add(charges, now, false)
	}
	return err
}

// Interface guards
var _ Store = fallback{}
