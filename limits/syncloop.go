package limits

import (
	"context"
	"time"
)

// SyncLoop runs the background exchange of a process's state with a
// shared backend (Redis): a step at once, then one every Interval while
// the steps succeed. After the n-th failed step in a row the next waits
// Interval·2^(n-1), at most MaxWait, so a backend that is down is not
// asked every interval for ever; the first step that succeeds brings the
// wait back to Interval. Failed steps are counted and logged through
// Failures (at most a line per its interval, so the first of a run at
// once unless a line was logged within the interval), and the end of a
// run that was logged is logged too.
type SyncLoop struct {
	// Interval is the wait between steps while they succeed.
	Interval time.Duration
	// MaxWait is the longest wait after failures; default 16 intervals.
	MaxWait time.Duration
	// Failures counts and logs the failed steps and wakes (required).
	Failures *Failures
	// Wake, when it receives, runs Woken at once: what cannot wait for
	// the next step (a cooldown to send). A wake's failure is counted,
	// and changes nothing of the steps' schedule.
	Wake  <-chan struct{}
	Woken func(context.Context) error
	// After is the clock: a channel that receives once d has passed.
	// Default time.After; tests replace it.
	After func(d time.Duration) <-chan time.Time
}

// DefaultMaxWaits is how many intervals SyncLoop waits at most.
const DefaultMaxWaits = 16

// Run runs the loop until ctx ends.
func (l *SyncLoop) Run(ctx context.Context, step func(context.Context) error) {
	after := l.After
	if after == nil {
		after = time.After
	}
	maxWait := l.MaxWait
	if maxWait <= 0 {
		maxWait = DefaultMaxWaits * l.Interval
	}
	wait := l.Interval
	for {
		err := step(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.Failures.Add(err)
		} else {
			l.Failures.Recovered()
			wait = l.Interval
		}
		next := after(wait)
		if err != nil {
			wait = min(2*wait, maxWait)
		}
		if !l.wait(ctx, next) {
			return
		}
	}
}

// wait waits for next, running Woken at each wake meanwhile; it reports
// false when ctx ended first.
func (l *SyncLoop) wait(ctx context.Context, next <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-next:
			return true
		case <-l.Wake:
			if err := l.Woken(ctx); err != nil && ctx.Err() == nil {
				l.Failures.Add(err)
			}
		}
	}
}
