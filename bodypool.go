package llmroute

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// This file holds the pool of the buffers that large request bodies are
// read into. A 100 KB body read into a new buffer for every request is
// 100 KB of garbage a request, and the collector's work that follows it
// was most of what llm_route added to a 100 KB request's CPU.
//
// A pooled buffer must not be handed to another request while anything
// may still read the body in it: the handler, until ServeHTTP returns,
// and the transport, which may hold an attempt's body after the proxy
// returned (net/http may close a request's body "even after RoundTrip
// returns"). A bodyLease counts its holders: the handler holds it once,
// each attempt's body once more (sendBody.setOn) until the attempt ends
// and closes it, after which the transport's reads of it fail. The
// buffer returns to its pool when the count reaches zero.
//
// Nothing else may keep a slice of the body past ServeHTTP: what outlives
// the request (records, decisions, placeholders) holds strings, which are
// copies.

// Pooled sizes: bodies from 32 KiB to 16 MiB, in buffers of eight sizes
// between each power of two and the next (at most an eighth more than the
// body: a buffer that is new costs what an unpooled body costs, within
// that). Smaller bodies cost little to allocate; larger ones are rare
// enough to leave to the collector. (The read asks for a byte more than
// the announced length, to see the end.)
const (
	minPooledShift = 15
	maxPooledShift = 24
	classSteps     = 8 // sizes per power of two
)

var bodyPools [(maxPooledShift-minPooledShift)*classSteps + 1]sync.Pool

// bodyClass returns the pool and the buffer size of n bytes, for
// 1<<minPooledShift <= n <= 1<<maxPooledShift: the size is n rounded up
// to an eighth of the power of two below it.
func bodyClass(n int) (class, size int) {
	k := bits.Len(uint(n-1)) - 1 // 1<<k <= n-1 < 1<<(k+1)
	step := 1 << (k - 3)
	m := (n + step - 1) / step // classSteps..2*classSteps
	if m == 2*classSteps {
		k, m = k+1, classSteps
	}
	return (k-minPooledShift)*classSteps + m - classSteps, m << (k - 3)
}

// leased counts the buffers leased and not yet back in their pool.
var leased atomic.Int64

// bodyLease is a pooled buffer and the count of those who may read it.
type bodyLease struct {
	buf   []byte
	class int
	refs  atomic.Int32
}

// leaseBody returns a lease on a buffer of at least n bytes, held once,
// or nil when bodies of n bytes are not pooled.
func leaseBody(n int) *bodyLease {
	if n < 1<<minPooledShift || n > 1<<maxPooledShift {
		return nil
	}
	class, size := bodyClass(n)
	l, _ := bodyPools[class].Get().(*bodyLease)
	if l == nil {
		l = &bodyLease{buf: make([]byte, size), class: class}
	}
	l.refs.Store(1)
	leased.Add(1)
	return l
}

// acquire adds a reader of the body. It is nil-safe: an unpooled body
// needs no count.
func (l *bodyLease) acquire() {
	if l != nil {
		l.refs.Add(1)
	}
}

// release ends a reference; the last one returns the buffer to its
// pool. Each holder releases exactly once.
func (l *bodyLease) release() {
	if l == nil {
		return
	}
	switch n := l.refs.Add(-1); {
	case n == 0:
		leased.Add(-1)
		bodyPools[l.class].Put(l)
	case n < 0:
		panic("llm_route: a request body's buffer released more often than held")
	}
}
