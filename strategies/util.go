package strategies

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Defaults shared by the built-in strategies.
const (
	// DefaultMinSamples is how many measured attempts a candidate needs
	// before its measurements are trusted; until then it is cold.
	DefaultMinSamples = 3
	// DefaultExplore is the probability that a measured strategy puts
	// a random candidate first.
	DefaultExplore = 0.05
	// DefaultExpectedOutput is the number of output tokens assumed for
	// cost estimates when the client sets no max_tokens.
	DefaultExpectedOutput = 256
)

// finitePositive reports whether v is a usable measurement: > 0 and
// neither NaN nor infinite.
func finitePositive(v float64) bool {
	return v > 0 && !math.IsInf(v, 1)
}

// cold reports whether a measurement v taken over samples attempts is
// too thin to rank by: fewer than minSamples samples, or no (or a
// nonsensical) value.
func cold(v float64, samples, minSamples int64) bool {
	return samples < minSamples || !finitePositive(v)
}

// latencyOf is the latency that matters for req on c: the time to first
// token for streams, the total time otherwise.
func latencyOf(req *Request, c *Candidate) float64 {
	if req != nil && req.Stream {
		return c.Stats.TTFTMs
	}
	return c.Stats.LatencyMs
}

// knownQuality is c's quality score, or 0 when it is unknown (0, negative
// or NaN).
func knownQuality(c *Candidate) float64 {
	if q := c.Quality; q > 0 {
		return q
	}
	return 0
}

// priced returns the estimated cost of req on c and whether it is
// known: an unpriced candidate, or one whose prices give no finite cost,
// has no known cost (which is never read as free).
func priced(req *Request, c *Candidate, expectedOutput int) (float64, bool) {
	if !c.Priced {
		return 0, false
	}
	v := Cost(req, c, expectedOutput)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// costKey is the estimated cost of req on c as a sort key: +Inf when
// unknown, so unpriced candidates go after all priced ones.
func costKey(req *Request, c *Candidate, expectedOutput int) float64 {
	if v, ok := priced(req, c, expectedOutput); ok {
		return v
	}
	return math.Inf(1)
}

// sortKey is a candidate's rank. Candidates are ordered by primary, then
// by secondary, ascending, then by their position before the sort, which
// makes any sort of the keys stable: ties keep the order the candidates
// came in (the configured order).
type sortKey struct {
	primary, secondary float64
	pos                int
}

// compareKeys is the order of sortKeys (see there). Keys are never NaN
// (the strategies map unknown values to ±Inf), so plain comparisons
// suffice.
func compareKeys(a, b sortKey) int {
	switch {
	case a.primary < b.primary:
		return -1
	case a.primary > b.primary:
		return 1
	case a.secondary < b.secondary:
		return -1
	case a.secondary > b.secondary:
		return 1
	}
	return a.pos - b.pos
}

// stackKeys is how many sort keys a strategy keeps on the stack; larger
// candidate sets borrow a key buffer from keyPool.
const stackKeys = 32

// smallSort is the size up to which orderByKeys sorts by insertion.
const smallSort = 16

// keyBuf is a pooled key buffer.
type keyBuf struct{ s []sortKey }

var keyPool = sync.Pool{New: func() any { return new(keyBuf) }}

// keysFor returns n keys to fill: stack[:n] when they fit, else a buffer
// from the pool, returned as the second result for releaseKeys.
func keysFor(stack *[stackKeys]sortKey, n int) ([]sortKey, *keyBuf) {
	if n <= stackKeys {
		return stack[:n], nil
	}
	kb := keyPool.Get().(*keyBuf)
	if cap(kb.s) < n {
		kb.s = make([]sortKey, n)
	}
	return kb.s[:n], kb
}

// releaseKeys returns a buffer from keysFor to the pool.
func releaseKeys(kb *keyBuf) {
	if kb != nil {
		keyPool.Put(kb)
	}
}

// orderByKeys sorts keys, keys[i] being the key of cands[i], and moves
// the candidates into the same order. Sorting the small keys and then
// moving each candidate once, along the cycles of the permutation, is
// much cheaper than sorting the candidates themselves, which are large
// structs with pointers. Nothing is allocated. keys is overwritten.
func orderByKeys(cands []Candidate, keys []sortKey) {
	if len(keys) <= smallSort {
		// Insertion sort, with compareKeys inlined: for the usual handful
		// of candidates it is several times faster than a generic sort
		// calling the comparator through a func value.
		for i := 1; i < len(keys); i++ {
			for j := i; j > 0 && compareKeys(keys[j], keys[j-1]) < 0; j-- {
				keys[j], keys[j-1] = keys[j-1], keys[j]
			}
		}
	} else {
		slices.SortFunc(keys, compareKeys)
	}
	for start := range keys {
		switch keys[start].pos {
		case -1:
			continue // moved already
		case start:
			keys[start].pos = -1
			continue
		}
		tmp := cands[start]
		for j := start; ; {
			src := keys[j].pos
			keys[j].pos = -1
			if src == start {
				cands[j] = tmp
				break
			}
			cands[j] = cands[src]
			j = src
		}
	}
}

// moveToFront moves cands[i] to the front, keeping the relative order of
// the others.
func moveToFront(cands []Candidate, i int) {
	if i <= 0 || i >= len(cands) {
		return
	}
	c := cands[i]
	copy(cands[1:i+1], cands[:i])
	cands[0] = c
}

// rotateLeft rotates cands left by k, so that cands[k] comes first and
// the cyclic order is kept; it moves each candidate twice and allocates
// nothing.
func rotateLeft(cands []Candidate, k int) {
	if k <= 0 || k >= len(cands) {
		return
	}
	slices.Reverse(cands[:k])
	slices.Reverse(cands[k:])
	slices.Reverse(cands)
}

// explore puts a random candidate other than the first one first, with
// probability p, and reports whether it did.
func explore(cands []Candidate, p float64) bool {
	if p <= 0 || len(cands) < 2 || rand.Float64() >= p {
		return false
	}
	moveToFront(cands, 1+rand.IntN(len(cands)-1))
	return true
}

// intArg parses the single argument of the current subdirective as a
// non-negative integer.
func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	v, err := strconv.Atoi(d.Val())
	if err != nil || v < 0 {
		return 0, d.Errf("invalid %s value '%s': want a non-negative integer", name, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return v, nil
}

// floatArg parses the single argument of the current subdirective as a
// finite number in [0, upper].
func floatArg(d *caddyfile.Dispenser, upper float64) (float64, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	v, err := strconv.ParseFloat(d.Val(), 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > upper {
		return 0, d.Errf("invalid %s value '%s': want a number from 0 to %g", name, d.Val(), upper)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return v, nil
}

// noOptions consumes a strategy that takes neither arguments nor a
// block.
func noOptions(d *caddyfile.Dispenser) error {
	d.Next() // consume strategy name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("unrecognized subdirective: %s", d.Val())
	}
	return nil
}

// checkRange checks an optional number setting against [0, upper].
func checkRange(name string, v *float64, upper float64) error {
	if v != nil && (math.IsNaN(*v) || *v < 0 || *v > upper) {
		return fmt.Errorf("%s must be from 0 to %g, got %g", name, upper, *v)
	}
	return nil
}

// orDefault returns v, or def when v is 0 (unset).
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// probability returns *p, or def when p is nil (unset).
func probability(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}
