package limits

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var ctx = context.Background()

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestCalendar(t *testing.T) {
	shanghai := mustLoc(t, "Asia/Shanghai")
	berlin := mustLoc(t, "Europe/Berlin")
	for _, tc := range []struct {
		name           string
		now            time.Time
		loc            *time.Location
		day, month     string
		dayEnd, monEnd time.Time
	}{
		{"utc midday", time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), time.UTC, "2026-12-04", "2026-12",
			time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"last nanosecond of the day", time.Date(2026, 12, 4, 23, 59, 59, 999999999, time.UTC), time.UTC, "2026-12-04", "2026-12",
			time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"midnight starts the next", time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), time.UTC, "2026-12-05", "2026-12",
			time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		// 16:00 UTC is already the next day in Shanghai (UTC+8).
		{"shanghai next day", time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC), shanghai, "2026-12-05", "2026-12",
			time.Date(2026, 12, 5, 16, 0, 0, 0, time.UTC), time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC)},
		{"shanghai new year", time.Date(2026, 12, 31, 16, 30, 0, 0, time.UTC), shanghai, "2027-01-01", "2027-01",
			time.Date(2027, 1, 1, 16, 0, 0, 0, time.UTC), time.Date(2027, 1, 31, 16, 0, 0, 0, time.UTC)},
		{"february leap year", time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC), time.UTC, "2028-02-29", "2028-02",
			time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)},
		// The day DST starts in Berlin has 23 hours.
		{"dst day", time.Date(2026, 3, 29, 10, 0, 0, 0, time.UTC), berlin, "2026-03-29", "2026-03",
			time.Date(2026, 3, 29, 22, 0, 0, 0, time.UTC), time.Date(2026, 3, 31, 22, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, end := day(tc.now, tc.loc)
			if id != tc.day || !end.Equal(tc.dayEnd) {
				t.Errorf("day = %s until %v, want %s until %v", id, end.UTC(), tc.day, tc.dayEnd)
			}
			id, end = month(tc.now, tc.loc)
			if id != tc.month || !end.Equal(tc.monEnd) {
				t.Errorf("month = %s until %v, want %s until %v", id, end.UTC(), tc.month, tc.monEnd)
			}
		})
	}
}

// reserve reserves a on s's counters in m.
func reserve(t *testing.T, m Store, s *Subject, a Amount, now time.Time) (*Reservation, Verdict) {
	t.Helper()
	r, v, err := reserveCharges(ctx, m, s.Charges(nil, a, now), now)
	if err != nil {
		t.Fatal(err)
	}
	return r, v
}

func TestDailyWindow(t *testing.T) { eachStore(t, testDailyWindow) }

func testDailyWindow(t *testing.T, m Store) {
	loc := mustLoc(t, "Asia/Shanghai")
	s := NewSubject("model:gpt-4o", Limits{DailyRequests: 3}, loc)
	now := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC) // 23:00 in Shanghai
	for i := range 3 {
		r, v := reserve(t, m, s, Amount{Requests: 1}, now)
		if !v.OK {
			t.Fatalf("request %d denied", i+1)
		}
		if err := r.Settle(ctx, Amount{Requests: 1}, now); err != nil {
			t.Fatal(err)
		}
	}
	_, v := reserve(t, m, s, Amount{Requests: 1}, now)
	if v.OK || v.Denied != 0 || v.RetryAfter != time.Hour {
		t.Fatalf("fourth request: %+v, want denied with Retry-After 1h (midnight in Shanghai)", v)
	}
	// A released reservation gives its request back.
	now2 := now.Add(59 * time.Minute)
	s2 := NewSubject("model:other", Limits{DailyRequests: 1}, loc)
	r, _ := reserve(t, m, s2, Amount{Requests: 1}, now2)
	if err := r.Release(ctx, now2); err != nil {
		t.Fatal(err)
	}
	if _, v := reserve(t, m, s2, Amount{Requests: 1}, now2); !v.OK {
		t.Fatal("a released request still counts")
	}
	// Midnight in Shanghai: a new day.
	if _, v := reserve(t, m, s, Amount{Requests: 1}, now.Add(time.Hour)); !v.OK {
		t.Fatal("denied on the next day")
	}
}

func TestMonthlyBudget(t *testing.T) { eachStore(t, testMonthlyBudget) }

func testMonthlyBudget(t *testing.T, m Store) {
	s := NewSubject("key:team-a", Limits{MonthlyBudget: 1}, time.UTC)
	now := time.Date(2026, 12, 30, 0, 0, 0, 0, time.UTC)
	r, v := reserve(t, m, s, Amount{Cost: 0.6}, now)
	if !v.OK {
		t.Fatal("first request denied")
	}
	// Actual cost below the reservation frees the difference.
	if err := r.Settle(ctx, Amount{Cost: 0.3}, now); err != nil {
		t.Fatal(err)
	}
	r, v = reserve(t, m, s, Amount{Cost: 0.7}, now)
	if !v.OK {
		t.Fatal("0.3 + 0.7 within a budget of 1 denied")
	}
	if err := r.Settle(ctx, Amount{Cost: 0.7}, now); err != nil {
		t.Fatal(err)
	}
	_, v = reserve(t, m, s, Amount{Cost: 0.01}, now)
	if v.OK || v.RetryAfter != 48*time.Hour {
		t.Fatalf("over budget: %+v, want denied until the new month (48h)", v)
	}
	if _, v := reserve(t, m, s, Amount{Cost: 0.5}, now.Add(48*time.Hour)); !v.OK {
		t.Fatal("denied in the new month")
	}
}

func TestLeakyBucket(t *testing.T) { eachStore(t, testLeakyBucket) }

func testLeakyBucket(t *testing.T, m Store) {
	s := NewSubject("provider:p", Limits{RPM: 60, TPM: 1000}, time.UTC)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	// A burst up to the limit passes.
	for i := range 60 {
		if _, v := reserve(t, m, s, Amount{Requests: 1, Tokens: 10}, now); !v.OK {
			t.Fatalf("request %d of the burst denied", i+1)
		}
	}
	_, v := reserve(t, m, s, Amount{Requests: 1, Tokens: 10}, now)
	if v.OK || v.Denied != 0 || v.RetryAfter != time.Second {
		t.Fatalf("61st: %+v, want rpm denied, Retry-After 1s", v)
	}
	// One second drains one request.
	now = now.Add(time.Second)
	if _, v := reserve(t, m, s, Amount{Requests: 1, Tokens: 10}, now); !v.OK {
		t.Fatal("denied after a request drained")
	}
	// Tokens: 610 taken, 600 drain per minute... a large request must
	// wait until the bucket has room.
	r, v := reserve(t, m, s, Amount{Requests: 0, Tokens: 500}, now)
	if v.OK {
		t.Fatalf("500 tokens on top of 610 of 1000 admitted: %+v", r)
	}
	if v.Denied != 1 {
		t.Errorf("denied by charge %d, want the tpm charge", v.Denied)
	}
	// One request larger than the whole limit passes on an empty bucket.
	big := NewSubject("provider:big", Limits{TPM: 100}, time.UTC)
	r, v = reserve(t, m, big, Amount{Tokens: 5000}, now)
	if !v.OK {
		t.Fatal("an oversized request on an empty bucket denied")
	}
	if err := r.Settle(ctx, Amount{Tokens: 5000}, now); err != nil {
		t.Fatal(err)
	}
	// 5000 + 1 - 100 tokens must drain at 100 a minute.
	if _, v := reserve(t, m, big, Amount{Tokens: 1}, now); v.OK || v.RetryAfter != 4901*600*time.Millisecond {
		t.Fatalf("after an oversized request: %+v, want denied for 49m0.6s", v)
	}
}

func TestAllOrNothing(t *testing.T) { eachStore(t, testAllOrNothing) }

func testAllOrNothing(t *testing.T, m Store) {
	a := NewSubject("model:a", Limits{DailyRequests: 10}, time.UTC)
	b := NewSubject("key:b", Limits{DailyRequests: 1}, time.UTC)
	now := time.Now()
	charges := a.Charges(b.Charges(nil, Amount{Requests: 1}, now), Amount{Requests: 1}, now)
	if v, _ := m.Reserve(ctx, charges, now); !v.OK {
		t.Fatal("first denied")
	}
	charges = a.Charges(b.Charges(nil, Amount{Requests: 1}, now), Amount{Requests: 1}, now)
	if v, _ := m.Reserve(ctx, charges, now); v.OK || v.Denied != 0 {
		t.Fatalf("second: %+v, want denied by the key's counter", v)
	}
	// The model's counter was not taken by the denied request.
	only := a.Charges(nil, Amount{Requests: 1}, now)
	if v, _ := m.Reserve(ctx, only, now); !v.OK || only[0].Left != 8 {
		t.Fatalf("model counter: %+v left %v, want 8 left after the third", v, only[0].Left)
	}
}

func TestMaxConcurrent(t *testing.T) { eachStore(t, testMaxConcurrent) }

func testMaxConcurrent(t *testing.T, m Store) {
	s := NewSubject("model:m", Limits{MaxConcurrent: 2}, time.UTC)
	now := time.Now()
	r1, _ := reserve(t, m, s, Amount{Requests: 1}, now)
	r2, _ := reserve(t, m, s, Amount{Requests: 1}, now)
	if _, v := reserve(t, m, s, Amount{Requests: 1}, now); v.OK {
		t.Fatal("third concurrent request admitted")
	}
	_ = r1.Settle(ctx, Amount{Requests: 1}, now)
	if _, v := reserve(t, m, s, Amount{Requests: 1}, now); !v.OK {
		t.Fatal("a settled request still holds its slot")
	}
	_ = r2.Release(ctx, now)
}

// Fifty concurrent requests against a nearly exhausted budget overshoot
// it by at most one request's reservation, even when each request costs
// twice what it reserved. They come through two stores sharing the
// counters: on Redis, two gateways.
func TestOvershootBound(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, actualFactor := range []float64{1, 2} {
				testOvershootBound(t, b.open(t, 2), actualFactor)
			}
		})
	}
}

func testOvershootBound(t *testing.T, fleet []Store, actualFactor float64) {
	s := NewSubject("key:k", Limits{DailyBudget: 1}, time.UTC)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	// Spent: 0.95 of 1.
	r, _ := reserve(t, fleet[0], s, Amount{Cost: 0.95}, now)
	if err := r.Settle(ctx, Amount{Cost: 0.95}, now); err != nil {
		t.Fatal(err)
	}
	const each = 0.02
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			charges := s.Charges(make([]Charge, 0, 4), Amount{Cost: each}, now)
			r, v, err := reserveCharges(ctx, fleet[i%len(fleet)], charges, now)
			if err != nil {
				t.Error(err)
			}
			if err != nil || !v.OK {
				return
			}
			admitted.Add(1)
			if err := r.Settle(ctx, Amount{Cost: each * actualFactor}, now); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	spent := 0.95 + float64(admitted.Load())*each*actualFactor
	// Reservations alone admit two; a settlement at twice the cost
	// that lands before the second reservation leaves room for one.
	if n := admitted.Load(); n < 1 || n > 2 || actualFactor == 1 && n != 2 {
		t.Errorf("factor %v: %d of 50 admitted", actualFactor, n)
	}
	if over := spent - 1; over > each*actualFactor+1e-9 {
		t.Errorf("factor %v: spent %v, over the budget by more than one request", actualFactor, spent)
	}
	// The counter holds what was spent: read it through a charge of 0
	// with a limit that cannot stop it.
	probe := s.Charges(nil, Amount{}, now)
	probe[0].Counter.Limit = 1000
	if _, v, err := reserveCharges(ctx, fleet[0], probe, now); err != nil || !v.OK || math.Abs(1000-probe[0].Left-spent) > 1e-9 {
		t.Errorf("factor %v: counter at %v, want %v spent (%+v, %v)", actualFactor, 1000-probe[0].Left, spent, v, err)
	}
}

// BenchmarkAdmission is one reservation on a limit in memory and its
// settlement, as a request makes them.
func BenchmarkAdmission(b *testing.B) {
	m := NewMemory()
	s := NewSubject("model:m", Limits{RPM: 1 << 40}, time.UTC)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r := NewReservation()
		r.Charges = s.Charges(r.Charges, Amount{Requests: 1, Tokens: 100}, now)
		if v, _ := r.Reserve(ctx, m, now); !v.OK {
			b.Fatal("denied")
		}
		_ = r.Settle(ctx, Amount{Requests: 1, Tokens: 90}, now)
	}
}

// reserveCharges reserves charges on st as one reservation, returning it
// when it was reserved (nil otherwise); what the store wrote on the
// charges (Left) is copied back to them.
func reserveCharges(ctx context.Context, st Store, charges []Charge, now time.Time) (*Reservation, Verdict, error) {
	r := NewReservation()
	r.Charges = append(r.Charges, charges...)
	v, err := r.Reserve(ctx, st, now)
	copy(charges, r.Charges)
	if err != nil || !v.OK {
		r.Free()
		return nil, v, err
	}
	return r, v, nil
}

func TestRetryAfterWaitsForEveryLimit(t *testing.T) { eachStore(t, testRetryAfterWaitsForEveryLimit) }

// A request that several full counters turn away may retry when all of
// them have room, not when the first of them does: here the rpm bucket
// has room again in a second, the day only at midnight.
func testRetryAfterWaitsForEveryLimit(t *testing.T, m Store) {
	s := NewSubject("model:m", Limits{RPM: 2, DailyRequests: 2}, time.UTC)
	now := time.Date(2026, 12, 4, 23, 0, 0, 0, time.UTC)
	for range 2 {
		if _, v := reserve(t, m, s, Amount{Requests: 1}, now); !v.OK {
			t.Fatal("denied within the limits")
		}
	}
	// rpm (first) is full with 2 of 2, and so is the day.
	_, v := reserve(t, m, s, Amount{Requests: 1}, now)
	if v.OK || v.Denied != 0 || v.RetryAfter != time.Hour {
		t.Fatalf("verdict %+v, want denied first by rpm, retry after 1h (midnight)", v)
	}
	// Once the bucket drained, the day alone denies, with the same wait.
	_, v = reserve(t, m, s, Amount{Requests: 1}, now.Add(time.Minute))
	if v.OK || v.Denied != 1 || v.RetryAfter != 59*time.Minute {
		t.Fatalf("verdict %+v, want denied by daily_requests, retry after 59m", v)
	}
}

func TestRetryAfterCountsWhatSettles(t *testing.T) { eachStore(t, testRetryAfterCountsWhatSettles) }

// A counter full only because of the reservations of requests under way
// has room again as soon as they settle on their usage (usually far less
// than the output cap they reserved): Retry-After is short, not the
// window's end or a long drain. Requests, which a settlement does not
// give back, still wait for the window.
func testRetryAfterCountsWhatSettles(t *testing.T, m Store) {
	now := time.Date(2026, 12, 4, 23, 0, 0, 0, time.UTC)
	s := NewSubject("key:k", Limits{DailyTokens: 10000, TPM: 5000, DailyRequests: 2}, time.UTC)
	a := Amount{Requests: 1, Tokens: 4100}
	underWay, v := reserve(t, m, s, a, now)
	if !v.OK {
		t.Fatal("first denied")
	}
	// tpm: 4100 held of 5000; a second 4100 would wait 38.4s for the
	// drain, but fits once the first settles.
	_, v = reserve(t, m, s, a, now)
	if v.OK || v.RetryAfter != time.Second {
		t.Fatalf("behind a request under way: %+v, want denied for 1s", v)
	}
	if err := underWay.Settle(ctx, Amount{Requests: 1, Tokens: 100}, now); err != nil {
		t.Fatal(err)
	}
	// Settled on its usage, it holds nothing: the second passes.
	second, v := reserve(t, m, s, a, now)
	if !v.OK {
		t.Fatalf("after the settlement: %+v", v)
	}
	// daily_requests: 2 of 2, which no settlement gives back: midnight.
	_, v = reserve(t, m, s, Amount{Requests: 1, Tokens: 1}, now)
	if v.OK || v.RetryAfter != time.Hour {
		t.Fatalf("out of requests: %+v, want denied until midnight (1h)", v)
	}
	// Settled on all it reserved, the tokens wait for their drain.
	if err := second.Settle(ctx, Amount{Requests: 1, Tokens: 4100}, now); err != nil {
		t.Fatal(err)
	}
	_, v = reserve(t, m, NewSubject("key:k", Limits{TPM: 5000}, time.UTC), a, now)
	if want := time.Duration((4200.0 + 4100 - 5000) / (5000.0 / 60) * float64(time.Second)); v.OK || absDur(v.RetryAfter-want) > time.Millisecond {
		t.Fatalf("behind settled usage: %+v, want denied for the drain, %v", v, want)
	}
}
