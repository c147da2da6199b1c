package limits

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Failures counts the failed calls of a shared-state backend and logs
// them at most once per interval, with how many failed since the last
// line: a dead Redis under load must not flood the log. A user that
// knows when the backend answers again (a SyncLoop) calls Recovered,
// which logs the end of a run of failures (Add) that was logged; errors
// of a backend that answered (Note) make no run.
type Failures struct {
	logger   *zap.Logger
	interval time.Duration
	msg      string
	fields   []zap.Field // logged with every line

	n        atomic.Uint64
	lastLog  atomic.Int64  // unix ns of the last line
	loggedAt atomic.Uint64 // n when it was logged

	run      atomic.Uint64 // failures since the last Recovered
	runStart atomic.Int64  // unix ns of the first of them
	reported atomic.Bool   // a line was logged during the run
}

// DefaultLogInterval is the least time between two lines of Failures,
// unless its user says otherwise.
const DefaultLogInterval = time.Minute

// NewFailures returns a counter that logs msg with fields on logger, at
// most once per interval (DefaultLogInterval if 0); a nil logger logs
// nothing.
func NewFailures(logger *zap.Logger, interval time.Duration, msg string, fields ...zap.Field) *Failures {
	if logger == nil {
		logger = zap.NewNop()
	}
	if interval <= 0 {
		interval = DefaultLogInterval
	}
	return &Failures{logger: logger, interval: interval, msg: msg, fields: fields}
}

// Add counts a failure of the backend to answer, one of a run that
// Recovered ends, and logs it as Note does.
func (f *Failures) Add(err error) {
	if f.run.Add(1) == 1 {
		f.runStart.Store(time.Now().UnixNano())
	}
	if f.Note(err) {
		f.reported.Store(true)
	}
}

// Note counts an error of a backend that answered (a command it
// refused: a key of another type, a write refused for memory), which
// starts no run to recover from, and logs it unless a line was logged
// less than an interval ago. It reports whether it logged.
func (f *Failures) Note(err error) bool {
	n := f.n.Add(1)
	now := time.Now().UnixNano()
	last := f.lastLog.Load()
	if last != 0 && now-last < int64(f.interval) || !f.lastLog.CompareAndSwap(last, now) {
		return false
	}
	since := n - f.loggedAt.Swap(n)
	f.logger.Warn(f.msg, append([]zap.Field{zap.Error(err), zap.Uint64("errors", n),
		zap.Uint64("errors_since_last_log", since)}, f.fields...)...)
	return true
}

// Count returns how many failures were counted.
func (f *Failures) Count() uint64 { return f.n.Load() }

// Recovered notes that the backend answered. When a line was logged of
// the failures since the last time, it logs that the backend answers
// again, with how many calls failed meanwhile and for how long.
func (f *Failures) Recovered() {
	if f.run.Load() == 0 {
		return
	}
	run := f.run.Swap(0)
	if !f.reported.Swap(false) || run == 0 {
		return
	}
	down := time.Duration(time.Now().UnixNano() - f.runStart.Load())
	f.logger.Info("redis state: answering again", append([]zap.Field{zap.String("after", f.msg),
		zap.Uint64("errors", run), zap.Duration("down_for", down)}, f.fields...)...)
}
