package limits

import (
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
)

// A gateway that crashed with requests under way leaves their
// concurrency slots on Redis; they free themselves when their lease
// (ConcurrencyTTL) ends, even while the other gateways keep using the
// counter. Each slot is its own: a release gives back the slot it took.
func TestRedisSlotsOfACrashedGatewayExpire(t *testing.T) {
	srv := redistest.Start(t)
	opts := RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second, OnError: OnErrorDeny, ConcurrencyTTL: 10 * time.Minute}
	crashed, live := newRedis(t, opts), newRedis(t, opts)
	s := NewSubject("model:m", Limits{MaxConcurrent: 3}, time.UTC)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for range 2 {
		if _, v := reserve(t, crashed, s, Amount{Requests: 1}, now); !v.OK {
			t.Fatal("denied within the limit")
		}
	}
	// The crashed gateway never settles. The live one keeps using its
	// one slot left, a request a minute.
	for minute := range 12 {
		at := now.Add(time.Duration(minute) * time.Minute)
		res, v := reserve(t, live, s, Amount{Requests: 1}, at)
		if !v.OK {
			t.Fatalf("minute %d: the one slot left denied: %+v", minute, v)
		}
		second, v := reserve(t, live, s, Amount{Requests: 1}, at)
		if expired := minute >= 10; v.OK != expired {
			t.Fatalf("minute %d: a second slot admitted = %v, want %v (the crashed gateway's leases end at minute 10)", minute, v.OK, expired)
		}
		for _, r := range []*Reservation{res, second} {
			if r != nil {
				if err := r.Settle(ctx, Amount{Requests: 1}, at); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// All three slots are the live gateway's now.
	at := now.Add(12 * time.Minute)
	var held [3]*Reservation
	for i := range held {
		var v Verdict
		if held[i], v = reserve(t, live, s, Amount{Requests: 1}, at); !v.OK || held[i].Charges[0].Left != float64(2-i) {
			t.Fatalf("slot %d: %+v, want admitted with %d left", i+1, v, 2-i)
		}
	}
	if _, v := reserve(t, live, s, Amount{Requests: 1}, at); v.OK {
		t.Fatal("a fourth slot admitted")
	}
	// A release gives back its own slot; one of a slot not held frees
	// none.
	stray := NewReservation()
	stray.Store, stray.Charges = live, append(stray.Charges, held[0].Charges[0])
	stray.Charges[0].Slot = "not-a-slot"
	if err := held[0].Release(ctx, at); err != nil {
		t.Fatal(err)
	}
	if err := stray.Release(ctx, at); err != nil {
		t.Fatal(err)
	}
	if _, v := reserve(t, live, s, Amount{Requests: 1}, at); !v.OK {
		t.Fatal("a released slot is still held")
	}
	if _, v := reserve(t, live, s, Amount{Requests: 1}, at); v.OK {
		t.Fatal("releasing a slot that is not held freed another")
	}
}

// A store dropped by a config reload (its settings changed) closes only
// once the reservations it holds on Redis have settled: the requests
// still under way must give back their amounts and their slots, which a
// closed client could not.
func TestRedisCloseWhenSettled(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedis(t, RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second, OnError: OnErrorDeny})
	s := NewSubject("model:m", Limits{MaxConcurrent: 3, DailyRequests: 10}, time.UTC)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	res, v := reserve(t, r, s, Amount{Requests: 1}, now)
	if !v.OK || v.Store != nil {
		t.Fatalf("%+v, want reserved on Redis", v)
	}
	r.CloseWhenSettled()
	if err := res.Release(ctx, now); err != nil {
		t.Fatalf("releasing after the store was dropped: %v", err)
	}
	c := client(t, srv)
	if n, err := c.Exists(ctx, DefaultRedisPrefix+"model:m|max_concurrent"+slotSuffix, DefaultRedisPrefix+"model:m|daily_requests|2026-12-04").Result(); err != nil || n != 0 {
		t.Fatalf("%d counters left on Redis (%v), want none", n, err)
	}
	if err := r.Ping(ctx); err == nil {
		t.Error("the client is still open once everything settled")
	}
	// With nothing held it closes at once.
	idle := newRedis(t, RedisOptions{URL: srv.URL(), Timeout: 10 * time.Second})
	idle.CloseWhenSettled()
	if err := idle.Ping(ctx); err == nil {
		t.Error("an idle store did not close")
	}
}
