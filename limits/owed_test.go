package limits

import (
	"math"
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
)

// Redis out of reach for a while (the link cut, the server and its data
// untouched): what the gateway reserved and settled on its local store
// meanwhile, and the settlement of a reservation Redis held that could
// not be sent, reach Redis with the first reservation it answers again.
// Otherwise an outage's spend would be lost to the fleet's daily
// counters, and a slot whose release failed would stay taken.
func TestRedisOwedAfterOutage(t *testing.T) {
	srv := redistest.Start(t)
	link := srv.Link(t)
	// A generous timeout: a cut link refuses at once, and a timeout on a
	// loaded machine must not move a call to the local store.
	r := newRedis(t, RedisOptions{URL: link.URL(), Timeout: 10 * time.Second, OnError: OnErrorAllow})
	s := NewSubject("key:team", Limits{MaxConcurrent: 5, DailyRequests: 100, DailyBudget: 10}, time.UTC)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	a := Amount{Requests: 1, Cost: 0.5}

	r1, v := reserve(t, r, s, a, now)
	if !v.OK || v.Store != nil {
		t.Fatalf("first: %+v, want reserved on Redis", v)
	}
	if err := r1.Settle(ctx, Amount{Requests: 1, Cost: 0.1}, now); err != nil {
		t.Fatal(err)
	}
	held, v := reserve(t, r, s, a, now)
	if !v.OK || v.Store != nil {
		t.Fatalf("held: %+v, want reserved on Redis", v)
	}

	link.Cut()
	for i := range 3 {
		res, v := reserve(t, r, s, a, now)
		if !v.OK || v.Store == nil {
			t.Fatalf("during the outage, %d: %+v, want reserved locally", i, v)
		}
		if err := res.Settle(ctx, Amount{Requests: 1, Cost: 0.2}, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := held.Settle(ctx, Amount{Requests: 1, Cost: 0.2}, now); err == nil {
		t.Fatal("settled on Redis through a cut link")
	}

	link.Restore(t)
	last, v := reserve(t, r, s, a, now)
	if !v.OK || v.Store != nil {
		t.Fatalf("after the outage: %+v, want reserved on Redis", v)
	}
	c := client(t, srv)
	want := map[Kind]float64{
		DailyRequests: 1 + 1 + 3 + 1,           // each request once
		DailyBudget:   0.1 + 0.2 + 3*0.2 + 0.5, // settled, and the last one reserved
		MaxConcurrent: 1,                       // the last one's slot only
	}
	for _, ch := range s.Charges(nil, a, now) {
		got, err := c.HGet(ctx, DefaultRedisPrefix+ch.Counter.Key, "v").Float64()
		if ch.Kind == MaxConcurrent {
			var n int64
			n, err = c.ZCard(ctx, DefaultRedisPrefix+ch.Counter.Key+slotSuffix).Result()
			got = float64(n)
		}
		if err != nil {
			t.Fatalf("%s: %v", ch.Counter.Key, err)
		}
		if math.Abs(got-want[ch.Kind]) > 1e-9 {
			t.Errorf("%s on Redis = %v, want %v", ch.Kind, got, want[ch.Kind])
		}
	}
	// What requests under way hold: the last one's reservation alone
	// (the held one's settlement took its own off).
	budget := s.Charges(nil, a, now)[2]
	if budget.Kind != DailyBudget {
		t.Fatalf("charge 2 is %v", budget.Kind)
	}
	if got, err := c.HGet(ctx, DefaultRedisPrefix+budget.Counter.Key, "h").Float64(); err != nil || math.Abs(got-0.5) > 1e-9 {
		t.Errorf("daily_budget held on Redis = %v (%v), want 0.5", got, err)
	}
	// Paid once: the next reservations send nothing more.
	if err := last.Release(ctx, now); err != nil {
		t.Fatal(err)
	}
	if _, v := reserve(t, r, s, a, now); !v.OK || v.Store != nil {
		t.Fatalf("then: %+v", v)
	}
	if got, _ := c.HGet(ctx, DefaultRedisPrefix+s.Charges(nil, a, now)[1].Counter.Key, "v").Float64(); got != 6 {
		t.Errorf("daily_requests = %v after one more request (released, then another), want 6", got)
	}
}

// What is owed follows its counter: a drained amount is no longer owed,
// nor one whose window is over; a return owed drains toward 0 too.
func TestOwedFollowsItsCounter(t *testing.T) {
	now := time.Date(2026, 12, 4, 23, 0, 0, 0, time.UTC)
	rpm := Counter{Key: "k|rpm", Limit: 60, Rate: 1}
	day := Counter{Key: "k|daily_requests|2026-12-04", Limit: 10, Expires: now.Add(time.Hour)}
	slots := Counter{Key: "k|max_concurrent", Limit: 2}
	var o owed
	o.add([]Charge{{Counter: rpm, Kind: RPM, Amount: 30}, {Counter: day, Kind: DailyRequests, Amount: 3},
		{Counter: slots, Kind: MaxConcurrent, Amount: 1}}, now, false)
	o.add([]Charge{{Counter: slots, Kind: MaxConcurrent, Amount: -1}}, now, true)
	got := map[string]float64{}
	for _, ch := range o.take(now.Add(20 * time.Second)) {
		got[ch.Counter.Key] = ch.Amount
	}
	if len(got) != 3 || got[rpm.Key] != 10 || got[day.Key] != 3 || got[slots.Key] != -1 {
		t.Errorf("owed after 20s = %v, want rpm 10 (30 drained 20), day 3, a slot back", got)
	}
	if left := o.take(now); len(left) != 0 {
		t.Errorf("taken twice: %v", left)
	}
	o.add([]Charge{{Counter: rpm, Kind: RPM, Amount: -5}, {Counter: day, Kind: DailyRequests, Amount: 2}}, now, false)
	if left := o.take(now.Add(time.Hour)); len(left) != 0 {
		t.Errorf("owed after the drain and the window's end: %v", left)
	}
}

// A reservation that timed out on an open connection may still have run
// on Redis: what the local store takes in its place is then not owed to
// Redis, which would count the request twice.
func TestRedisTimedOutReservationNotOwed(t *testing.T) {
	srv := redistest.Start(t)
	link := srv.Link(t)
	local := NewMemory()
	// Long enough for a loaded machine; the stall alone must exceed it.
	r := newRedis(t, RedisOptions{URL: link.URL(), Timeout: 2 * time.Second, OnError: OnErrorAllow, Local: local})
	s := NewSubject("key:team", Limits{DailyRequests: 100}, time.UTC)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	a := Amount{Requests: 1}
	key := DefaultRedisPrefix + s.Charges(nil, a, now)[0].Counter.Key
	c := client(t, srv)
	count := func() float64 {
		v, err := c.HGet(ctx, key, "v").Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	if _, v := reserve(t, r, s, a, now); !v.OK || v.Store != nil {
		t.Fatalf("first: %+v, want reserved on Redis", v)
	}
	link.Stall()
	res, v := reserve(t, r, s, a, now)
	if !v.OK || v.Store != Store(local) {
		t.Fatalf("stalled: %+v, want reserved on the local store alone", v)
	}
	if err := res.Settle(ctx, a, now); err != nil {
		t.Fatal(err)
	}
	link.Resume()
	// The stalled script reaches Redis after all, and runs.
	deadline := time.Now().Add(time.Minute)
	for count() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled reservation never ran: %v on Redis", count())
		}
		time.Sleep(10 * time.Millisecond) // a poll interval, not a timing assumption
	}
	if _, v := reserve(t, r, s, a, now); !v.OK || v.Store != nil {
		t.Fatalf("after: %+v, want reserved on Redis", v)
	}
	if got := count(); got != 3 {
		t.Errorf("%v requests on Redis, want 3: the timed-out one counted once", got)
	}
}
