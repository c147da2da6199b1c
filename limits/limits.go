package limits

import (
	"fmt"
	"math"
)

// Limits are the limits of one subject: a model, a provider, a route or
// a client key. Zero means no limit.
type Limits struct {
	// Requests per minute, as a leaky bucket: the count drains
	// steadily, rpm per minute, so bursts up to rpm pass at once and the
	// sustained rate is rpm.
	RPM int64 `json:"rpm,omitempty"`

	// Tokens per minute (input + output), as a leaky bucket like rpm.
	TPM int64 `json:"tpm,omitempty"`

	// Requests under way at once.
	MaxConcurrent int64 `json:"max_concurrent,omitempty"`

	// Requests per calendar day (see reset_tz).
	DailyRequests int64 `json:"daily_requests,omitempty"`

	// Tokens (input + output) per calendar day.
	DailyTokens int64 `json:"daily_tokens,omitempty"`

	// Spend in USD per calendar day, from the registry's prices.
	DailyBudget float64 `json:"daily_budget,omitempty"`

	// Spend in USD per calendar month.
	MonthlyBudget float64 `json:"monthly_budget,omitempty"`
}

// Kind names one limit; the names are those of the config fields.
type Kind uint8

// The kinds of limit.
const (
	RPM Kind = iota
	TPM
	MaxConcurrent
	DailyRequests
	DailyTokens
	DailyBudget
	MonthlyBudget
	numKinds
)

var kindNames = [numKinds]string{"rpm", "tpm", "max_concurrent", "daily_requests", "daily_tokens", "daily_budget", "monthly_budget"}

func (k Kind) String() string { return kindNames[k] }

// value returns the limit of kind k, 0 when unset.
func (l *Limits) value(k Kind) float64 {
	switch k {
	case RPM:
		return float64(l.RPM)
	case TPM:
		return float64(l.TPM)
	case MaxConcurrent:
		return float64(l.MaxConcurrent)
	case DailyRequests:
		return float64(l.DailyRequests)
	case DailyTokens:
		return float64(l.DailyTokens)
	case DailyBudget:
		return l.DailyBudget
	case MonthlyBudget:
		return l.MonthlyBudget
	}
	return 0
}

// Empty reports whether no limit is set.
func (l *Limits) Empty() bool {
	for k := range numKinds {
		if l.value(k) != 0 {
			return false
		}
	}
	return true
}

// Validate checks the values: counts not negative, budgets finite and not
// negative.
func (l *Limits) Validate() error {
	for k := range numKinds {
		if v := l.value(k); !(v >= 0) || math.IsInf(v, 0) {
			return fmt.Errorf("%s must be a finite number not below 0, got %v", k, v)
		}
	}
	return nil
}

// settles reports whether a reservation on a limit of kind k usually
// gives back part of its amount when it settles: tokens and spend are
// reserved at their most and settled on the usage, while a request is a
// request (and a concurrency slot is given back whole).
func (k Kind) settles() bool {
	switch k {
	case TPM, DailyTokens, DailyBudget, MonthlyBudget:
		return true
	}
	return false
}

// Amount is what a request takes of its subjects' limits.
type Amount struct {
	Requests float64
	Tokens   float64
	Cost     float64 // USD
}

// of is the part of a that a limit of kind k counts.
func (a Amount) of(k Kind) float64 {
	switch k {
	case RPM, MaxConcurrent, DailyRequests:
		return a.Requests
	case TPM, DailyTokens:
		return a.Tokens
	}
	return a.Cost
}
