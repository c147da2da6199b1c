// Package testclock is a clock for the background loops under test
// (limits.SyncLoop's After): the test sees each wait the loop asks for
// and ends it when it likes, so that a test of a back-off counts waits
// instead of sleeping.
package testclock

import (
	"testing"
	"time"
)

// patience is how long the test waits for the loop: generous, for a
// loaded machine.
const patience = time.Minute

// After is the clock.
type After struct {
	asked chan time.Duration
	fire  chan time.Time
}

// New returns a clock.
func New() *After {
	return &After{asked: make(chan time.Duration, 64), fire: make(chan time.Time)}
}

// After is the loop's clock: it notes the wait d, which ends on Fire.
func (a *After) After(d time.Duration) <-chan time.Time {
	a.asked <- d
	return a.fire
}

// Next waits until the loop asks to wait, and returns how long.
func (a *After) Next(t testing.TB) time.Duration {
	t.Helper()
	select {
	case d := <-a.asked:
		return d
	case <-time.After(patience):
		t.Fatal("the loop did not wait again")
		return 0
	}
}

// Fire ends the wait under way.
func (a *After) Fire(t testing.TB) {
	t.Helper()
	select {
	case a.fire <- time.Now():
	case <-time.After(patience):
		t.Fatal("the loop is not waiting")
	}
}
