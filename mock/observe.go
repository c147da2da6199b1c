package mock

import (
	"sync"
	"sync/atomic"
)

// cancels counts, per mock name, the inference requests whose client
// (the gateway) went away before the answer was complete: a hedge's
// loser, a timeout. Tests running the mock in process read it.
var cancels sync.Map // name → *atomic.Int64

// Cancels returns how many inference requests the mock called name saw
// cancelled before its answer was complete.
func Cancels(name string) int64 {
	if v, ok := cancels.Load(name); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// served counts, per mock name, the inference requests the mock
// received.
var served sync.Map // name → *atomic.Int64

// Served returns how many inference requests the mock called name
// received.
func Served(name string) int64 {
	if v, ok := served.Load(name); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func count(m *sync.Map, name string) {
	v, _ := m.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// slowTail reports whether the nth inference request is one of the slow
// tail: requests are slow at the rate ratio, spread evenly (the nth is
// slow when n×ratio passes a whole number).
func slowTail(n int64, ratio float64) bool {
	if ratio <= 0 {
		return false
	}
	return int64(float64(n)*ratio) != int64(float64(n-1)*ratio)
}
