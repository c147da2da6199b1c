package limits

import (
	"fmt"
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Directives are the Caddyfile subdirectives of limits, for blocks that
// read them among their own. Syntax:
//
//	rpm <n>
//	tpm <n>
//	max_concurrent <n>
//	daily_requests <n>
//	daily_tokens <n>
//	budget <USD> day|month
var Directives = map[string]bool{
	"rpm": true, "tpm": true, "max_concurrent": true,
	"daily_requests": true, "daily_tokens": true, "budget": true,
}

// UnmarshalLimit reads the limit subdirective the dispenser is on, if it
// is one (see Directives), into l, and reports whether it was.
func (l *Limits) UnmarshalLimit(d *caddyfile.Dispenser) (bool, error) {
	dir := d.Val()
	if !Directives[dir] {
		return false, nil
	}
	if err := l.Set(dir, d.RemainingArgs()); err != nil {
		return true, d.Err(err.Error())
	}
	return true, nil
}

// Set sets the limit of a subdirective from its arguments. It checks
// syntax only; Validate judges the values.
func (l *Limits) Set(dir string, args []string) error {
	if dir == "budget" {
		if len(args) != 2 {
			return fmt.Errorf("budget needs an amount in USD and day or month")
		}
		v, err := strconv.ParseFloat(args[0], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("budget: want a number of USD, got %q", args[0])
		}
		if v == 0 {
			return errZero(dir)
		}
		switch args[1] {
		case "day":
			l.DailyBudget = v
		case "month":
			l.MonthlyBudget = v
		default:
			return fmt.Errorf("budget: the period is day or month, not %q", args[1])
		}
		return nil
	}
	if len(args) != 1 {
		return fmt.Errorf("%s needs exactly one argument", dir)
	}
	n, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil {
		return fmt.Errorf("%s: want an integer, got %q", dir, args[0])
	}
	if n == 0 {
		return errZero(dir)
	}
	switch dir {
	case "rpm":
		l.RPM = n
	case "tpm":
		l.TPM = n
	case "max_concurrent":
		l.MaxConcurrent = n
	case "daily_requests":
		l.DailyRequests = n
	case "daily_tokens":
		l.DailyTokens = n
	default:
		return fmt.Errorf("unknown limit %s", dir)
	}
	return nil
}

// errZero refuses a limit of 0: the config reads 0 as "no limit", which
// a limit written down as 0 (meant to block) would silently be.
func errZero(dir string) error {
	return fmt.Errorf("%s: 0 is not allowed (it would mean no limit; leave %s out for that)", dir, dir)
}
