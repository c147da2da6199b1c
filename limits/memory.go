package limits

import (
	"context"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Memory is the Store of one process. One mutex guards every counter: a
// reservation checks and takes several counters at once, and holds it
// for a few float operations per counter.
type Memory struct {
	mu    sync.Mutex
	cells map[string]*cell
	ops   int // operations since the last sweep
}

type cell struct {
	value   float64
	held    float64 // reserved by requests under way (of kinds that settle)
	stamp   time.Time
	expires time.Time
	rate    float64
}

// sweepEvery is how many operations pass between two sweeps of the
// counters that are empty or over.
const sweepEvery = 4096

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{cells: make(map[string]*cell)} }

// Reserve implements Store.
func (m *Memory) Reserve(_ context.Context, charges []Charge, now time.Time) (Verdict, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maybeSweep(now)
	denied := Verdict{Denied: -1}
	for i, ch := range charges {
		v, held := m.level(ch.Counter, now)
		if ok, wait := room(ch.Counter, v, held, ch.Amount, now); !ok {
			denied.deny(i, wait)
		}
	}
	if denied.Denied >= 0 {
		return denied, nil
	}
	for i := range charges {
		charges[i].Left = charges[i].Counter.Limit - m.add(charges[i], holds(charges[i]), now)
	}
	return Verdict{OK: true}, nil
}

// Adjust implements Store.
func (m *Memory) Adjust(_ context.Context, charges []Charge, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range charges {
		m.add(ch, ch.Held, now)
	}
	return nil
}

// level is the counter's value at now, and what of it requests under
// way hold.
func (m *Memory) level(c Counter, now time.Time) (float64, float64) {
	if cl := m.cells[c.Key]; cl != nil {
		return level(c, cl.value, cl.stamp, now), cl.held
	}
	return 0, 0
}

// add adds the charge to its counter, and held to what requests under
// way hold of it, and returns the new value; m.mu is held.
func (m *Memory) add(ch Charge, held float64, now time.Time) float64 {
	cl := m.cells[ch.Counter.Key]
	if cl == nil {
		cl = new(cell)
		m.cells[ch.Counter.Key] = cl
	}
	cl.value = max(level(ch.Counter, cl.value, cl.stamp, now)+ch.Amount, 0)
	cl.held = max(cl.held+held, 0)
	cl.stamp, cl.expires, cl.rate = now, ch.Counter.Expires, ch.Counter.Rate
	return cl.value
}

// maybeSweep forgets counters whose window is over or that drained
// empty, now and then; m.mu is held.
func (m *Memory) maybeSweep(now time.Time) {
	if m.ops++; m.ops < sweepEvery {
		return
	}
	m.ops = 0
	for k, cl := range m.cells {
		c := Counter{Rate: cl.rate, Expires: cl.expires}
		if cl.rate > 0 || !cl.expires.IsZero() {
			if level(c, cl.value, cl.stamp, now) == 0 {
				delete(m.cells, k)
			}
		}
	}
}

// Interface guards
var _ Store = (*Memory)(nil)

// shared holds the in-memory store every handler uses, so counters
// survive config reloads; it goes with the last handler.
var shared = caddy.NewUsagePool()

// pooledMemory is the shared store's entry in the pool.
type pooledMemory struct{ *Memory }

// Destruct implements caddy.Destructor; memory needs no cleanup.
func (pooledMemory) Destruct() error { return nil }

// AcquireMemory returns the process's in-memory store and takes a
// reference to it; release it with ReleaseMemory.
func AcquireMemory() *Memory {
	v, _, _ := shared.LoadOrNew("memory", func() (caddy.Destructor, error) {
		return pooledMemory{NewMemory()}, nil
	})
	return v.(pooledMemory).Memory
}

// ReleaseMemory drops a reference taken by AcquireMemory.
func ReleaseMemory() { _, _ = shared.Delete("memory") }
