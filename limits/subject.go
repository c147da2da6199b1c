package limits

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Subject is something limited: a model, a provider, a route or a client
// key, with its limits. It makes the charges of a request on its
// counters, whose keys it keeps for the current day and month.
type Subject struct {
	name   string // e.g. "model:gpt-4o"
	limits Limits
	loc    *time.Location
	keys   [3]string // rpm, tpm, max_concurrent

	mu        sync.Mutex
	dayKey    [2]string // daily_requests, daily_tokens; then budget below
	dayBudget string
	dayEnd    time.Time
	monthKey  string
	monthEnd  time.Time
}

// NewSubject returns the subject name with limits l, whose calendar
// limits reset at midnight in loc.
func NewSubject(name string, l Limits, loc *time.Location) *Subject {
	if loc == nil {
		loc = time.UTC
	}
	return &Subject{name: name, limits: l, loc: loc,
		keys: [3]string{name + "|rpm", name + "|tpm", name + "|max_concurrent"}}
}

// Name returns the subject's name.
func (s *Subject) Name() string { return s.name }

// Limits returns the subject's limits.
func (s *Subject) Limits() Limits { return s.limits }

// Charges appends to dst the charges a request of amount a makes on
// the subject's counters at now, one per limit set.
func (s *Subject) Charges(dst []Charge, a Amount, now time.Time) []Charge {
	l := &s.limits
	if l.RPM > 0 {
		dst = append(dst, Charge{Kind: RPM, Amount: a.of(RPM), Counter: Counter{
			Key: s.keys[0], Limit: float64(l.RPM), Rate: float64(l.RPM) / 60}})
	}
	if l.TPM > 0 {
		dst = append(dst, Charge{Kind: TPM, Amount: a.of(TPM), Counter: Counter{
			Key: s.keys[1], Limit: float64(l.TPM), Rate: float64(l.TPM) / 60}})
	}
	if l.MaxConcurrent > 0 {
		dst = append(dst, Charge{Kind: MaxConcurrent, Amount: 1, Counter: Counter{
			Key: s.keys[2], Limit: float64(l.MaxConcurrent)}})
	}
	if l.DailyRequests == 0 && l.DailyTokens == 0 && l.DailyBudget == 0 && l.MonthlyBudget == 0 {
		return dst
	}
	s.mu.Lock()
	if !now.Before(s.dayEnd) || now.Before(s.dayEnd.AddDate(0, 0, -1)) {
		var id string
		id, s.dayEnd = day(now, s.loc)
		s.dayKey = [2]string{s.name + "|daily_requests|" + id, s.name + "|daily_tokens|" + id}
		s.dayBudget = s.name + "|daily_budget|" + id
	}
	if l.MonthlyBudget > 0 && (!now.Before(s.monthEnd) || now.Before(s.monthEnd.AddDate(0, -1, 0))) {
		var id string
		id, s.monthEnd = month(now, s.loc)
		s.monthKey = s.name + "|monthly_budget|" + id
	}
	dayKey, dayBudget, dayEnd, monthKey, monthEnd := s.dayKey, s.dayBudget, s.dayEnd, s.monthKey, s.monthEnd
	s.mu.Unlock()
	for _, w := range [...]struct {
		kind    Kind
		limit   float64
		key     string
		expires time.Time
	}{
		{DailyRequests, float64(l.DailyRequests), dayKey[0], dayEnd},
		{DailyTokens, float64(l.DailyTokens), dayKey[1], dayEnd},
		{DailyBudget, l.DailyBudget, dayBudget, dayEnd},
		{MonthlyBudget, l.MonthlyBudget, monthKey, monthEnd},
	} {
		if w.limit > 0 {
			dst = append(dst, Charge{Kind: w.kind, Amount: a.of(w.kind), Counter: Counter{
				Key: w.key, Limit: w.limit, Expires: w.expires}})
		}
	}
	return dst
}

// Reservation is what a request reserves on a store: take one with
// NewReservation, append its charges, and Reserve. A reserved one is
// settled or released exactly once; one that was not (denied, or an
// error) is freed. Either recycles it: it must not be used after.
type Reservation struct {
	Store   Store // where it is held, once reserved
	Charges []Charge
}

var reservations = sync.Pool{New: func() any { return &Reservation{Charges: make([]Charge, 0, 8)} }}

// NewReservation returns an empty reservation, recycled when possible
// (admission allocates nothing).
func NewReservation() *Reservation { return reservations.Get().(*Reservation) }

// Reserve reserves the charges on st at now. When every charge was
// reserved, the reservation is held on the store that holds it
// (Verdict.Store when set).
func (r *Reservation) Reserve(ctx context.Context, st Store, now time.Time) (Verdict, error) {
	v, err := st.Reserve(ctx, r.Charges, now)
	if err == nil && v.OK {
		r.Store = st
		if v.Store != nil {
			r.Store = v.Store
		}
	}
	return v, err
}

// Free recycles a reservation that holds nothing.
func (r *Reservation) Free() {
	clear(r.Charges)
	r.Store, r.Charges = nil, r.Charges[:0]
	reservations.Put(r)
}

// Settle replaces the reserved amounts with the actual ones and frees the
// concurrency slots.
func (r *Reservation) Settle(ctx context.Context, actual Amount, now time.Time) error {
	return r.adjust(ctx, now, func(ch Charge) float64 {
		if ch.Kind == MaxConcurrent {
			return -ch.Amount
		}
		return actual.of(ch.Kind) - ch.Amount
	})
}

// Release gives every reserved amount back: the request failed or the
// client went away.
func (r *Reservation) Release(ctx context.Context, now time.Time) error {
	return r.adjust(ctx, now, func(ch Charge) float64 { return -ch.Amount })
}

// adjust turns the reservation's charges into their adjustments, in
// place, applies them, and frees the reservation.
func (r *Reservation) adjust(ctx context.Context, now time.Time, delta func(Charge) float64) error {
	if r == nil || len(r.Charges) == 0 {
		return nil
	}
	for i := range r.Charges {
		r.Charges[i].Held = -holds(r.Charges[i])
		r.Charges[i].Amount = delta(r.Charges[i])
	}
	err := r.Store.Adjust(ctx, r.Charges, now)
	r.Free()
	return err
}

// SubjectOf returns the name of the subject whose counter c is.
func SubjectOf(c Counter) string {
	name, _, _ := strings.Cut(c.Key, "|")
	return name
}
