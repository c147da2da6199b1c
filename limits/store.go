// Package limits keeps the counters behind llm_route's quotas, rate limits
// and budgets: requests per minute, tokens per minute, concurrent
// requests, requests and tokens per day, and spend per day or month.
//
// Every limit is a Counter: a value that may not pass its limit, that
// drains at a steady rate (a leaky bucket: rpm, tpm), belongs to one
// calendar window (daily and monthly limits: the window is part of the
// key and the counter expires with it), or neither (concurrency).
// Admission reserves an amount on every counter that applies to a
// request at once, all or nothing, before the upstream call; the caller
// settles the reservation with the actual amount afterwards, or releases
// it. A Store holds the counters: in memory, or shared by a fleet.
package limits

import (
	"context"
	"time"
)

// Counter is one limited value.
type Counter struct {
	// Key names the counter, window included for calendar limits.
	Key string
	// Limit is the most the value may hold.
	Limit float64
	// Rate is how much the value drains per second; 0: it does not.
	Rate float64
	// Expires is when the counter's window ends; zero: never.
	Expires time.Time
}

// Charge is an amount taken from (or, negative, given back to) a counter.
type Charge struct {
	Counter Counter
	// Kind is the limit the counter enforces.
	Kind   Kind
	Amount float64
	// Left is set by a successful Reserve: the room left on the counter
	// after the reservation.
	Left float64
	// Slot is set by a shared store's Reserve on a concurrency counter:
	// the slot the reservation holds, which its settlement gives back.
	Slot string
	// Held is, in an adjustment, the change of the amount the counter
	// holds for reservations not settled yet: minus what a settling
	// reservation reserved. Reserve holds the amount of a charge whose
	// kind settles on usage (see Kind.settles) by itself.
	Held float64
}

// Verdict is the answer to a reservation.
type Verdict struct {
	// OK is true when every charge was reserved.
	OK bool
	// Denied is the index of the first charge without room when not OK.
	Denied int
	// RetryAfter is when every counter without room will have room for
	// its charge (the longest of their waits): a window's end, the time
	// it takes to drain, or a short wait for a counter that neither
	// drains nor expires, or that has room but for what requests under
	// way hold (see room).
	RetryAfter time.Duration
	// Store, when not nil, is the store that answered in place of the
	// one asked, and holds the reservation: a Redis store that cannot
	// reach Redis reserves on its local store (on_error allow), and owes
	// Redis what it takes there. Settle or release there; Reserve (the
	// function) does.
	Store Store
	// Unavailable is true when the store could not be asked and its
	// policy denies (on_error deny); Denied is then 0 and means nothing.
	Unavailable bool
}

// Store holds counters. Its methods are safe for concurrent use.
type Store interface {
	// Reserve adds every charge's amount to its counter if each counter
	// has room for it at now, and none otherwise. A counter has room
	// when its value plus the amount stays within its limit, or when it
	// is empty (so that one request larger than a limit can still pass
	// on its own). It sets each charge's Left when it reserves.
	Reserve(ctx context.Context, charges []Charge, now time.Time) (Verdict, error)
	// Adjust adds each charge's amount to its counter without checking
	// the limit: the difference between the actual and the reserved
	// amount when a reservation settles, or minus the reserved amount
	// when it is released.
	Adjust(ctx context.Context, charges []Charge, now time.Time) error
}

// deny notes that charge i has no room for wait: the first such charge
// is the one denied, and the verdict waits for the longest.
func (v *Verdict) deny(i int, wait time.Duration) {
	if v.Denied < 0 {
		v.Denied = i
	}
	v.RetryAfter = max(v.RetryAfter, wait)
}

// busyWait is the Retry-After of a counter that neither drains nor
// expires (concurrency): room comes when a request ends.
const busyWait = time.Second

// level is a counter's value at now, given the value it had at stamp:
// drained at its rate, and 0 once its window is over.
func level(c Counter, value float64, stamp, now time.Time) float64 {
	if !c.Expires.IsZero() && !now.Before(c.Expires) {
		return 0
	}
	if c.Rate > 0 && now.After(stamp) {
		value -= c.Rate * now.Sub(stamp).Seconds()
	}
	return max(value, 0)
}

// room reports whether amount fits on a counter holding value, of which
// held is reserved by requests under way, and if not, how long until it
// will: a drain, the window's end, or, when it would fit but for what
// the requests under way reserved (they settle on their usage, usually
// less), a short wait.
func room(c Counter, value, held, amount float64, now time.Time) (bool, time.Duration) {
	if value <= 0 || value+amount <= c.Limit {
		return true, 0
	}
	var wait time.Duration
	switch {
	case c.Rate > 0:
		over := value + amount - c.Limit
		if over > value { // only an empty bucket takes it
			over = value
		}
		wait = time.Duration(over / c.Rate * float64(time.Second))
	case !c.Expires.IsZero():
		wait = c.Expires.Sub(now)
	default:
		return false, busyWait
	}
	if used := value - held; held > 0 && (used <= 0 || used+amount <= c.Limit) {
		wait = min(wait, busyWait)
	}
	return false, wait
}

// holds is what a reservation's charge adds to its counter's held
// amount.
func holds(ch Charge) float64 {
	if ch.Kind.settles() {
		return ch.Amount
	}
	return 0
}
