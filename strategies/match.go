package strategies

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode"
	"unicode/utf8"
)

// This file holds the keyword matcher that the rules and difficulty
// strategies share: it finds many patterns at once in one pass over a
// text, ignoring letter case, without making a lower-case copy of the
// text.

// matchPattern is a pattern of a foldMatcher.
type matchPattern struct {
	// text is the pattern in lower case, as strings.ToLower returns it.
	// It is not empty.
	text string
	// wordStart and wordEnd, when set, require the pattern not to be
	// preceded (followed) by an ASCII letter or digit in the lower-case
	// text.
	wordStart, wordEnd bool
}

// maxWordStartLen is the longest pattern that may require a word start:
// the byte before a match is looked up among the last bytes scanned,
// which matchScan keeps by position modulo lastMask+1.
const (
	maxWordStartLen = 127
	lastMask        = 127
)

// classFold is the class of the bytes that start a character that may
// change in lower case: the scan decodes and lower-cases the character
// before it steps over its bytes.
const classFold = math.MaxUint8

// foldMatcher finds patterns in the lower case of a text, as
// strings.Contains(lower, pattern) would with lower the text lower-cased
// one character at a time (unicode.ToLower, invalid bytes kept as they
// are). It is an Aho–Corasick automaton over bytes: it steps once per
// byte of lower-case text whatever the number of patterns.
//
// Bytes that occur in no pattern share class 0, so each state's row in
// the transition table has one entry per byte that occurs in a pattern.
// Transitions hold the next state's row offset (state × nclass), so a step
// is one table load; states with outputs are numbered last, so a match
// check is one comparison.
//
// A foldMatcher is immutable once built and safe for concurrent use.
type foldMatcher struct {
	// classes maps a byte of the text to its class: ASCII capitals to
	// the class of their lower case, the first byte of a character that
	// may change in lower case to classFold.
	classes [256]uint8
	// lowerClasses maps a byte of lower-case text to its class.
	lowerClasses [256]uint8
	nclass       int
	delta        []uint32 // row offset + class → the next state's row offset
	firstOut     int      // the row offset of the first state with outputs
	// The patterns that end in state s are outIDs[outStart[s]:outStart[s+1]].
	outStart []int32
	outIDs   []int32
	pats     []matchPattern
}

// maxMatchStates bounds the transition table of a foldMatcher.
const maxMatchStates = 1 << 24

// newFoldMatcher builds the matcher of pats. A pattern's id in the
// results of a scan is its index in pats; equal patterns may repeat.
func newFoldMatcher(pats []matchPattern) (*foldMatcher, error) {
	m := &foldMatcher{pats: slices.Clone(pats)}
	for _, p := range pats {
		switch {
		case p.text == "":
			return nil, errors.New("empty pattern")
		case p.wordStart && len(p.text) > maxWordStartLen:
			return nil, fmt.Errorf("pattern %q: longer than %d bytes", p.text, maxWordStartLen)
		}
	}

	// Byte classes: one for each byte that occurs in a pattern, in byte
	// order, and 0 for the rest.
	var used [256]bool
	for _, p := range pats {
		for i := 0; i < len(p.text); i++ {
			used[p.text[i]] = true
		}
	}
	m.nclass = 1
	for b := range 256 {
		if used[b] {
			if m.nclass == classFold {
				return nil, errors.New("too many distinct bytes in patterns")
			}
			m.lowerClasses[b] = uint8(m.nclass)
			m.nclass++
		}
	}
	m.classes = m.lowerClasses
	for b := 'A'; b <= 'Z'; b++ {
		m.classes[b] = m.lowerClasses[b+'a'-'A']
	}
	for b := utf8.RuneSelf; b < 256; b++ {
		if foldLeads[b] {
			m.classes[b] = classFold
		}
	}
	nc := m.nclass

	// The trie; 0 in a transition means none (the root is never a target).
	goTo := make([]int32, nc)
	terminal := [][]int32{nil}
	for id, p := range pats {
		st := 0
		for i := 0; i < len(p.text); i++ {
			cl := int(m.lowerClasses[p.text[i]])
			next := goTo[st*nc+cl]
			if next == 0 {
				if len(terminal) >= maxMatchStates/nc {
					return nil, errors.New("patterns too long in total")
				}
				next = int32(len(terminal))
				terminal = append(terminal, nil)
				goTo = append(goTo, make([]int32, nc)...)
				goTo[st*nc+cl] = next
			}
			st = int(next)
		}
		terminal[st] = append(terminal[st], int32(id))
	}
	states := len(terminal)

	// Breadth-first: failure links, full transitions and output sets.
	delta := make([]int32, states*nc)
	fail := make([]int32, states)
	outs := make([][]int32, states)
	queue := make([]int32, 0, states)
	for cl := range nc {
		if next := goTo[cl]; next != 0 {
			delta[cl] = next
			queue = append(queue, next)
		}
	}
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		outs[st] = append(slices.Clone(terminal[st]), outs[fail[st]]...)
		for cl := range nc {
			next := goTo[int(st)*nc+cl]
			if next == 0 {
				delta[int(st)*nc+cl] = delta[int(fail[st])*nc+cl]
				continue
			}
			fail[next] = delta[int(fail[st])*nc+cl]
			delta[int(st)*nc+cl] = next
			queue = append(queue, next)
		}
	}

	// Renumber: the root first, states with outputs last.
	order := make([]int32, 0, states)
	for st := range states {
		if len(outs[st]) == 0 {
			order = append(order, int32(st))
		}
	}
	m.firstOut = len(order) * nc
	for st := range states {
		if len(outs[st]) > 0 {
			order = append(order, int32(st))
		}
	}
	newID := make([]int32, states)
	for i, st := range order {
		newID[st] = int32(i)
	}
	m.delta = make([]uint32, states*nc)
	m.outStart = make([]int32, states+1)
	for i, st := range order {
		for cl := range nc {
			m.delta[i*nc+cl] = uint32(newID[delta[int(st)*nc+cl]]) * uint32(nc)
		}
		m.outStart[i] = int32(len(m.outIDs))
		m.outIDs = append(m.outIDs, outs[st]...)
	}
	m.outStart[states] = int32(len(m.outIDs))
	return m, nil
}

// foldLeads tells the bytes that start the UTF-8 encoding of a character
// that unicode.ToLower changes. CJK ideographs, kana and most Hangul
// start with other bytes, so the scan steps over them without decoding.
var foldLeads = func() (t [256]bool) {
	var lo, hi [utf8.UTFMax]byte
	for _, cr := range unicode.CaseRanges {
		if cr.Delta[unicode.LowerCase] == 0 || cr.Hi < utf8.RuneSelf {
			continue
		}
		utf8.EncodeRune(lo[:], rune(max(cr.Lo, utf8.RuneSelf)))
		utf8.EncodeRune(hi[:], rune(cr.Hi))
		for b := int(lo[0]); b <= int(hi[0]); b++ {
			t[b] = true
		}
	}
	return t
}()

// lowerTab is unicode.ToLower of U+0000–U+05FF (Latin, Greek, Cyrillic,
// Armenian): a lookup is quicker than unicode.ToLower's search.
var lowerTab = func() (t [0x600]uint16) {
	for r := range t {
		t[r] = uint16(unicode.ToLower(rune(r)))
	}
	return t
}()

// lowerChanges marks the characters below U+10000 that unicode.ToLower
// changes, by code point.
var lowerChanges = func() (t [0x10000 / 64]uint64) {
	for _, cr := range unicode.CaseRanges {
		for r := rune(cr.Lo); r <= rune(min(cr.Hi, 0xFFFF)); r++ {
			if unicode.ToLower(r) != r {
				t[r/64] |= 1 << (r % 64)
			}
		}
	}
	return t
}()

// matchScan is the state of a scan of text with a foldMatcher, and its
// result: the patterns that occur. A text may be fed in pieces; they are
// scanned as one text, each piece lower-cased on its own.
type matchScan struct {
	m   *foldMatcher
	row int // the state's row offset
	pos int // bytes of lower-case text fed
	// found is the set of the patterns that occur, by id (see hasBit);
	// late the set of those that occur starting at or after byte from of
	// the lower-case text (none until startLate sets from).
	found, late []uint64
	from        int
	// last holds the last bytes fed, by pos % len(last), for word
	// starts. ASCII capitals may be kept as they are: only whether a
	// byte is a letter or digit matters.
	last [lastMask + 1]byte
	// pend is the row offset of a state with outputs that need a word
	// end, waiting for the next byte (0: none; the root has no outputs);
	// pendPos is pos there.
	pend    int
	pendPos int
}

// newScan returns a scan of m that records into found and late, empty
// sets of bitWords(patterns) words. late may be nil if startLate is not
// called.
func (m *foldMatcher) newScan(found, late []uint64) matchScan {
	return matchScan{m: m, found: found, late: late, from: math.MaxInt}
}

// startLate makes the scan record into late the patterns that occur
// from here on: starting at or after the end of the text fed so far.
func (sc *matchScan) startLate() {
	sc.from = sc.pos
}

// bitWords is the number of words of a set of n ids.
func bitWords(n int) int {
	return (n + 63) / 64
}

// hasBit reports whether set holds id.
func hasBit(set []uint64, id int) bool {
	return set[id/64]&(1<<(id%64)) != 0
}

// record records an occurrence of pattern id that ends at byte end of
// the lower-case text.
func (sc *matchScan) record(id, end int) {
	sc.found[id/64] |= 1 << (id % 64)
	if end-len(sc.m.pats[id].text) >= sc.from {
		sc.late[id/64] |= 1 << (id % 64)
	}
}

// feed scans text, lower-cased, after what was fed before.
func (sc *matchScan) feed(text string) {
	m := sc.m
	row, pos := sc.row, sc.pos
	delta, classes, firstOut := m.delta, &m.classes, m.firstOut
	for i := 0; i < len(text); i++ {
		b := text[i]
		cl := classes[b]
		if cl == classFold {
			r, size := utf8.DecodeRuneInString(text[i:])
			if l := toLower(r); l != r {
				sc.row, sc.pos = row, pos
				sc.feedRune(l)
				row, pos = sc.row, sc.pos
				i += size - 1
				continue
			}
			// The character stays as it is: its bytes go on here (the
			// bytes after the first are never classFold).
			cl = m.lowerClasses[b]
		}
		// This is sc.step, with row and pos kept in registers.
		if sc.pend != 0 {
			sc.resolve(b)
		}
		row = int(delta[row+int(cl)])
		sc.last[pos&lastMask] = b
		pos++
		if row >= firstOut {
			sc.matched(row, pos)
		}
	}
	sc.row, sc.pos = row, pos
}

// feedRune feeds the UTF-8 encoding of r.
func (sc *matchScan) feedRune(r rune) {
	var buf [utf8.UTFMax]byte
	for _, b := range buf[:utf8.EncodeRune(buf[:], r)] {
		sc.step(b)
	}
}

// toLower is unicode.ToLower, quicker on the characters it does not
// change (fullwidth punctuation shares its first bytes with fullwidth
// capitals) and on those of U+0000–U+05FF.
func toLower(r rune) rune {
	switch {
	case r < rune(len(lowerTab)):
		return rune(lowerTab[r])
	case r < 0x10000 && lowerChanges[r/64]&(1<<(r%64)) == 0:
		return r
	}
	return unicode.ToLower(r)
}

// step feeds b, a byte of lower-case text.
func (sc *matchScan) step(b byte) {
	if sc.pend != 0 {
		sc.resolve(b)
	}
	sc.row = int(sc.m.delta[sc.row+int(sc.m.lowerClasses[b])])
	sc.last[sc.pos&lastMask] = b
	sc.pos++
	if sc.row >= sc.m.firstOut {
		sc.matched(sc.row, sc.pos)
	}
}

// end ends the text: the matches that wait for a word end get it.
func (sc *matchScan) end() {
	if sc.pend != 0 {
		sc.resolve(' ')
	}
}

// matched records the patterns that end in the state at row offset row,
// pos bytes into the text; those that need a word end wait for the next
// byte.
func (sc *matchScan) matched(row, pos int) {
	m := sc.m
	st := row / m.nclass
	for _, id := range m.outIDs[m.outStart[st]:m.outStart[st+1]] {
		p := &m.pats[id]
		if p.wordEnd {
			sc.pend, sc.pendPos = row, pos
		} else if !p.wordStart || sc.wordBefore(pos-len(p.text)) {
			sc.record(int(id), pos)
		}
	}
}

// resolve records the matches that wait for a word end if next, the byte
// after them, is not a letter or digit.
func (sc *matchScan) resolve(next byte) {
	row, end := sc.pend, sc.pendPos
	sc.pend = 0
	if isWordByte(next) {
		return
	}
	m := sc.m
	st := row / m.nclass
	for _, id := range m.outIDs[m.outStart[st]:m.outStart[st+1]] {
		if p := &m.pats[id]; p.wordEnd && (!p.wordStart || sc.wordBefore(end-len(p.text))) {
			sc.record(int(id), end)
		}
	}
}

// wordBefore reports whether a word may start at offset start of the
// lower-case text: it is the start, or the byte before is not a letter
// or digit.
func (sc *matchScan) wordBefore(start int) bool {
	return start == 0 || !isWordByte(sc.last[(start-1)&lastMask])
}

// isWordByte reports whether b is an ASCII letter or digit.
func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
