package strategies

import (
	"math/rand/v2"
	"slices"
	"sync"
)

// This file holds how strategies reorder candidates: by sort keys,
// without moving the large candidate structs more than once and without
// allocating, and by the simpler moves of rotation and exploration.

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

// smallSort is the size up to which orderByKeys sorts by insertion.
const smallSort = 16

// stackKeys is how many sort keys sortBy keeps on the stack: as many as
// it sorts by insertion, the usual case. Larger candidate sets borrow a
// key buffer from keyPool; a larger stack array would cost every call
// the zeroing of it.
const stackKeys = smallSort

// keyBuf is a pooled key buffer.
type keyBuf struct{ s []sortKey }

var keyPool = sync.Pool{New: func() any { return new(keyBuf) }}

// sortBy orders cands by the keys that key returns for each candidate,
// once per candidate: by primary, then by secondary, ascending, ties in
// the order the candidates came in (see sortKey). The keys must not be
// NaN. It allocates nothing: the keys of up to stackKeys candidates are
// on the stack, those of more in a pooled buffer.
func sortBy(cands []Candidate, key func(c *Candidate) (primary, secondary float64)) {
	if len(cands) < 2 {
		return
	}
	var stack [stackKeys]sortKey
	keys := stack[:]
	var kb *keyBuf
	if len(cands) > stackKeys {
		kb = keyPool.Get().(*keyBuf)
		if cap(kb.s) < len(cands) {
			kb.s = make([]sortKey, len(cands))
		}
		keys = kb.s
	}
	keys = keys[:len(cands)]
	for i := range keys {
		p, s := key(&cands[i])
		keys[i] = sortKey{primary: p, secondary: s, pos: i}
	}
	orderByKeys(cands, keys)
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
			k, j := keys[i], i
			for ; j > 0 && compareKeys(k, keys[j-1]) < 0; j-- {
				keys[j] = keys[j-1]
			}
			keys[j] = k
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
