package limits

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
	"github.com/caddy-llm-route/llmroute/internal/testclock"
)

// A SyncLoop whose Redis dies backs off (each wait twice the last, up
// to MaxWait), logs the first failure and not every one, and once Redis
// is back runs every interval again and logs the recovery.
func TestSyncLoopBacksOff(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = client.Close() })
	core, logs := observer.New(zapcore.InfoLevel)
	clock := testclock.New()
	var steps atomic.Int32
	loop := SyncLoop{
		Interval: time.Second,
		MaxWait:  8 * time.Second,
		Failures: NewFailures(zap.New(core), time.Hour, "test exchange failed"),
		After:    clock.After,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop.Run(ctx, func(ctx context.Context) error {
			steps.Add(1)
			return client.Ping(ctx).Err()
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	next := func(want time.Duration) {
		t.Helper()
		if got := clock.Next(t); got != want {
			t.Fatalf("after %d steps the loop waits %v, want %v", steps.Load(), got, want)
		}
	}
	lines := func(level zapcore.Level) int {
		return logs.FilterLevelExact(level).Len()
	}

	next(time.Second)
	srv.Kill()
	for _, want := range []time.Duration{1, 2, 4, 8, 8} {
		clock.Fire(t)
		next(want * time.Second)
	}
	if n := loop.Failures.Count(); n != 5 {
		t.Errorf("%d failures counted, want 5", n)
	}
	if n := lines(zapcore.WarnLevel); n != 1 {
		t.Errorf("%d lines logged of 5 failures, want 1 (the first)", n)
	}

	srv = srv.Restart(t)
	clock.Fire(t)
	next(time.Second)
	clock.Fire(t)
	next(time.Second)
	if n := steps.Load(); n != 8 {
		t.Errorf("%d steps, want 8 (one per wait)", n)
	}
	if n := loop.Failures.Count(); n != 5 {
		t.Errorf("%d failures counted after the recovery, want 5", n)
	}
	recovered := logs.FilterMessage("redis state: answering again").All()
	if len(recovered) != 1 || fmt.Sprint(recovered[0].ContextMap()["errors"]) != "5" {
		t.Errorf("recovery lines %v, want one of 5 errors", recovered)
	}

	// A second outage within the log interval is not logged, nor is its
	// recovery: a flapping Redis makes at most a line of failure and one
	// of recovery per interval.
	srv.Kill()
	clock.Fire(t)
	next(time.Second)
	srv = srv.Restart(t)
	clock.Fire(t)
	next(time.Second)
	if n := lines(zapcore.WarnLevel) + lines(zapcore.InfoLevel); n != 2 {
		t.Errorf("%d lines after a second outage within the log interval, want the 2 of the first", n)
	}
}

// A wake runs Woken at once, between steps; its failure is counted but
// changes nothing of the steps' waits.
func TestSyncLoopWake(t *testing.T) {
	clock := testclock.New()
	wake := make(chan struct{})
	woken := make(chan struct{})
	loop := SyncLoop{
		Interval: time.Second,
		Failures: NewFailures(nil, time.Hour, "test"),
		After:    clock.After,
		Wake:     wake,
		Woken: func(context.Context) error {
			woken <- struct{}{}
			return errors.New("down")
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop.Run(ctx, func(context.Context) error { return nil })
	}()
	defer func() {
		cancel()
		<-done
	}()
	if d := clock.Next(t); d != time.Second {
		t.Fatalf("waits %v", d)
	}
	wake <- struct{}{}
	<-woken
	clock.Fire(t)
	if d := clock.Next(t); d != time.Second {
		t.Errorf("after a failed wake the loop waits %v, want the interval", d)
	}
	if n := loop.Failures.Count(); n != 1 {
		t.Errorf("%d failures counted, want the wake's", n)
	}
}

// An error of a backend that answered (Note) is counted and logged but
// starts no run: the next success logs no "answering again".
func TestFailuresNoteMakesNoRun(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	f := NewFailures(zap.New(core), 0, "x")
	f.Note(errors.New("WRONGTYPE"))
	f.Recovered()
	if n := logs.FilterMessage("x").Len(); n != 1 || f.Count() != 1 {
		t.Errorf("%d lines of the error, %d counted; want 1 and 1", n, f.Count())
	}
	if n := logs.FilterMessage("redis state: answering again").Len(); n != 0 {
		t.Errorf("%d lines that Redis answers again after an error of a Redis that answered", n)
	}
}
