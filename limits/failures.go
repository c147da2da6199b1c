package limits

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Failures counts the failed calls of a shared-state backend and logs
// them at most once per interval, with how many failed since the last
// line: a dead Redis under load must not flood the log.
type Failures struct {
	logger   *zap.Logger
	interval time.Duration
	msg      string
	fields   []zap.Field // logged with every line

	n        atomic.Uint64
	lastLog  atomic.Int64  // unix ns of the last line
	loggedAt atomic.Uint64 // n when it was logged
}

// NewFailures returns a counter that logs msg with fields on logger, at
// most once per interval.
func NewFailures(logger *zap.Logger, interval time.Duration, msg string, fields ...zap.Field) *Failures {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Failures{logger: logger, interval: interval, msg: msg, fields: fields}
}

// Add counts a failure, and logs it unless a line was logged less than an
// interval ago.
func (f *Failures) Add(err error) {
	n := f.n.Add(1)
	now := time.Now().UnixNano()
	last := f.lastLog.Load()
	if last != 0 && now-last < int64(f.interval) || !f.lastLog.CompareAndSwap(last, now) {
		return
	}
	since := n - f.loggedAt.Swap(n)
	f.logger.Warn(f.msg, append([]zap.Field{zap.Error(err), zap.Uint64("errors", n),
		zap.Uint64("errors_since_last_log", since)}, f.fields...)...)
}

// Count returns how many failures were counted.
func (f *Failures) Count() uint64 { return f.n.Load() }
